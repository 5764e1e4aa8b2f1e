#include "core/python/gc_locator.h"

#include <elf.h>
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

// Per-version facts this file relies on, and where they were read (CPython sources: python/cpython; the local
// builds: Debian's 3.11.2 with its debug symbols from python3.11-dbg, and unstripped 3.8.18, 3.9.18, 3.10.13,
// 3.11.7, 3.12.1, 3.13.0 builds whose .symtab was compared with what this code finds):
//
// Collection function (symbol method), all `static Py_ssize_t`, generation is the 2nd argument (`int`), the
// return value is collected + uncollectable:
//   3.8-3.9   Modules/gcmodule.c  collect(state|tstate, int generation, Py_ssize_t *n_collected,
//                                         Py_ssize_t *n_uncollectable, int nofail)
//   3.10-3.12 Modules/gcmodule.c  gc_collect_main(tstate, int generation, Py_ssize_t *, Py_ssize_t *, int nofail)
//   3.13      Python/gc.c         gc_collect_main(tstate, int generation, _PyGC_Reason reason); automatic
//                                 collections pass GENERATION_AUTO (-1) and the function picks the generation
//   3.14.0-.4 Python/gc.c         incremental collector: no gc_collect_main; the entry for every collection is
//                                 Py_ssize_t _PyGC_Collect(tstate, int generation, _PyGC_Reason), generation 0..2
//                                 (_Py_RunGC passes 1)
//   3.14.5+   Python/gc.c         generational collector forward-ported back (gh-148726): gc_collect_main as in
//                                 3.13 (reported by a third-party source read against tag v3.14.5; the symbol
//                                 method tries gc_collect_main first and falls back to _PyGC_Collect, so either
//                                 layout is handled by what the file contains)
// GCC's LTO renames static functions to NAME.lto_priv.N (Debian's 3.11: gc_collect_main.lto_priv.0) without
// changing their calling convention, so that suffix is accepted. IPA clones (.constprop.N, .isra.N, .part.N; the
// unstripped 3.8.18 build has only collect.constprop.0/1) may drop or reorder arguments and `.cold` parts are not
// entry points: those are refused, and the methoddef method takes over.
//
// gc.collect()'s C function (methoddef method): Modules/clinic/gcmodule.c.h, GC_COLLECT_METHODDEF is
//   {"collect", gc_collect, METH_FASTCALL|METH_KEYWORDS, gc_collect__doc__} in 3.8 through 3.14, i.e.
//   gc_collect(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames), one optional
//   parameter `generation` (default NUM_GENERATIONS - 1 = 2), returning PyLong_FromSsize_t(collected +
//   uncollectable) or NULL. Checked in the binaries: the table entry's function equals the gc_collect symbol in
//   every local build above, and GcMethods is 18 entries (576 bytes) in 3.8 and 19 (608 bytes) from 3.9 on
//   (is_finalized added).
//
// PyLong layout: Include/longintrepr.h (3.8-3.10), Include/cpython/longintrepr.h (3.11-3.14).
//   <= 3.11: struct _longobject { PyObject_VAR_HEAD; digit ob_digit[1]; }: ob_size at 16, ob_digit at 24.
//   >= 3.12: struct _longobject { PyObject_HEAD; _PyLongValue long_value; } with
//            _PyLongValue { uintptr_t lv_tag; digit ob_digit[1]; }: lv_tag at 16, ob_digit at 24;
//            _PyLong_SIGN_MASK 3 (0 positive, 1 zero, 2 negative), _PyLong_NON_SIZE_BITS 3 (ndigits = tag >> 3);
//            unchanged in 3.14 (bit 2 reserved for an immortality flag).
namespace sp {
namespace {

constexpr std::int32_t kMethFastcallKeywords = 0x80 | 0x02;  // METH_FASTCALL | METH_KEYWORDS
constexpr std::uint64_t kMethodDefSize = 32;                 // PyMethodDef on 64-bit
constexpr int kMaxTableEntries = 64;

// Methods of the gc module across 3.8-3.14 (Modules/gcmodule.c GcMethods).
bool is_gc_method_name(std::string_view name) {
  static constexpr std::array<std::string_view, 18> kNames = {
      "enable",        "disable",       "isenabled",     "set_debug",   "get_debug", "get_count",
      "set_threshold", "get_threshold", "collect",       "get_objects", "get_stats", "is_tracked",
      "is_finalized",  "get_referrers", "get_referents", "freeze",      "unfreeze",  "get_freeze_count"};
  return std::find(kNames.begin(), kNames.end(), name) != kNames.end();
}

// A method name as CPython spells them: a C identifier of reasonable length.
bool is_identifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

std::string_view basename_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Parses digits at s[pos...]; advances pos. -1 when there are none (or too many to be a version component).
int parse_number(std::string_view s, std::size_t& pos) {
  int value = 0;
  std::size_t start = pos;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])) && pos - start < 4) {
    value = value * 10 + (s[pos] - '0');
    ++pos;
  }
  return pos == start ? -1 : value;
}

// "3.11.2", "3.13.0rc1", "3.12.1+" (whole string): major, minor, micro.
std::optional<PythonVersion> parse_py_version_string(std::string_view s) {
  std::size_t pos = 0;
  PythonVersion v;
  v.major = parse_number(s, pos);
  if (v.major != 3 || pos >= s.size() || s[pos++] != '.') return std::nullopt;
  v.minor = parse_number(s, pos);
  if (v.minor < 0 || pos >= s.size() || s[pos++] != '.') return std::nullopt;
  v.micro = parse_number(s, pos);
  if (v.micro < 0) return std::nullopt;
  // Release level and serial (a1, b2, rc1) and the '+' of unreleased builds.
  while (pos < s.size() && (s[pos] == 'a' || s[pos] == 'b' || s[pos] == 'r' || s[pos] == 'c' ||
                            std::isdigit(static_cast<unsigned char>(s[pos])))) {
    ++pos;
  }
  if (pos < s.size() && s[pos] == '+') ++pos;
  if (pos != s.size()) return std::nullopt;
  return v;
}

// PY_VERSION strings ("3.11.2") in the read-only data. `standalone` when the string starts right after a NUL; else
// it ends a longer literal after '-' or '/' (linkers merge a string into another that ends with it: pyenv's builds
// keep PY_VERSION only as the tail of "/root/.pyenv/versions/3.12.1").
struct RodataVersion {
  PythonVersion version;
  bool standalone = false;
};

std::vector<RodataVersion> rodata_versions(const ElfFile& elf) {
  std::vector<RodataVersion> out;
  for (const auto& s : elf.sections()) {
    if (s.type != SHT_PROGBITS || !(s.flags & SHF_ALLOC) || (s.flags & (SHF_EXECINSTR | SHF_WRITE))) continue;
    auto bytes = elf.section_bytes(s);
    std::string_view hay(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    for (std::size_t pos = hay.find("3."); pos != std::string_view::npos; pos = hay.find("3.", pos + 1)) {
      const char before = pos > 0 ? hay[pos - 1] : '\0';
      if (before != '\0' && before != '-' && before != '/') continue;
      auto end = hay.find('\0', pos);
      if (end == std::string_view::npos || end - pos > 16) continue;
      if (auto v = parse_py_version_string(hay.substr(pos, end - pos))) {
        v->source = "rodata";
        out.push_back({*v, before == '\0'});
      }
    }
  }
  // Standalone strings first: they are PY_VERSION itself.
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.standalone > b.standalone; });
  return out;
}

struct Candidate {
  std::uint64_t entry = 0;  // address of the PyMethodDef entry whose ml_name is "collect"
  std::uint64_t func = 0;   // its ml_meth
  std::vector<std::string> names;
  int gc_names = 0;
};

// Reads pointer-sized words the way the loader will have left them (as link-time addresses): through a relocation
// when there is one for that address (PIE executables, shared objects: RELATIVE for static functions and strings,
// 64-bit absolute against a defined symbol for exported functions), else as stored in the file (non-PIE
// executables, and NULLs, which are never relocated).
class PointerReader {
 public:
  explicit PointerReader(const ElfFile& elf) : elf_(elf) {
    for (const auto& r : elf.relocations()) {
      if (elf.is_relative_relocation(r.type)) {
        relative_[r.offset] = static_cast<std::uint64_t>(r.addend);
      } else if (elf.is_absolute64_relocation(r.type) && r.symbol != 0) {
        // Resolving to this file's own definition ignores interposition, which gc's static functions never have.
        auto sym = elf.symbol_at(r.symtab, r.symbol);
        if (sym && sym->shndx != SHN_UNDEF) absolute_[r.offset] = sym->value + static_cast<std::uint64_t>(r.addend);
      }
    }
  }

  std::optional<std::uint64_t> pointer_at(std::uint64_t vaddr) const {
    if (auto it = relative_.find(vaddr); it != relative_.end()) return it->second;
    if (auto it = absolute_.find(vaddr); it != absolute_.end()) return it->second;
    auto bytes = elf_.read_vaddr(vaddr, 8);
    if (!bytes) return std::nullopt;
    std::uint64_t v = 0;
    std::memcpy(&v, bytes->data(), 8);
    return v;
  }

  std::optional<std::int32_t> int_at(std::uint64_t vaddr) const {
    auto bytes = elf_.read_vaddr(vaddr, 4);
    if (!bytes) return std::nullopt;
    std::int32_t v = 0;
    std::memcpy(&v, bytes->data(), 4);
    return v;
  }

  const std::unordered_map<std::uint64_t, std::uint64_t>& relative() const { return relative_; }

 private:
  const ElfFile& elf_;
  std::unordered_map<std::uint64_t, std::uint64_t> relative_;
  std::unordered_map<std::uint64_t, std::uint64_t> absolute_;
};

// Name of a PyMethodDef entry if it looks like one (identifier name, function in executable code), else nullopt.
std::optional<std::string_view> entry_name(const ElfFile& elf, const PointerReader& ptrs, std::uint64_t entry) {
  auto name_ptr = ptrs.pointer_at(entry);
  auto meth = ptrs.pointer_at(entry + 8);
  if (!name_ptr || !meth || *name_ptr == 0 || !elf.is_executable_vaddr(*meth)) return std::nullopt;
  auto name = elf.cstring_at_vaddr(*name_ptr, 64);
  if (!name || !is_identifier(*name)) return std::nullopt;
  return name;
}

// Walks the table around a candidate entry (backwards to its first entry, forwards to the NULL sentinel).
std::optional<Candidate> inspect_candidate(const ElfFile& elf, const PointerReader& ptrs, std::uint64_t entry) {
  auto flags = ptrs.int_at(entry + 16);
  auto meth = ptrs.pointer_at(entry + 8);
  if (!flags || *flags != kMethFastcallKeywords || !meth || !elf.is_executable_vaddr(*meth)) return std::nullopt;
  Candidate c;
  c.entry = entry;
  c.func = *meth;
  std::uint64_t first = entry;
  for (int i = 0; i < kMaxTableEntries && first >= kMethodDefSize; ++i) {
    if (!entry_name(elf, ptrs, first - kMethodDefSize)) break;
    first -= kMethodDefSize;
  }
  for (int i = 0; i < kMaxTableEntries; ++i) {
    auto name = entry_name(elf, ptrs, first + std::uint64_t(i) * kMethodDefSize);
    if (!name) break;
    c.names.emplace_back(*name);
    if (is_gc_method_name(*name)) ++c.gc_names;
  }
  return c;
}

// A table is gc's when most of its names are gc's method names, several of them, and "collect" only once.
bool looks_like_gc_table(const Candidate& c) {
  const auto collects = std::count(c.names.begin(), c.names.end(), "collect");
  return collects == 1 && c.gc_names >= 6 && c.gc_names * 2 >= static_cast<int>(c.names.size());
}

std::optional<GcProbePlan> try_usdt(const ElfFile& elf, const PythonVersion& version, std::string& why_not) {
  GcProbePlan plan;
  bool start = false, done = false;
  for (auto& n : elf.usdt_notes()) {
    if (n.provider != "python") continue;
    if (n.name == "gc__start") start = true;
    if (n.name == "gc__done") done = true;
    if (n.name == "gc__start" || n.name == "gc__done") plan.usdt_notes.push_back(std::move(n));
  }
  if (!start || !done) {
    why_not = start ? "no python:gc__done note" : "no python:gc__start note";
    return std::nullopt;
  }
  plan.method = GcMethod::Usdt;
  plan.version = version;
  plan.generation = GcGenerationSource::UsdtArg;
  plan.collected = GcCountSource::UsdtArg;
  plan.generation_readable = true;
  plan.collected_readable = true;
  plan.detail = fmt::format("USDT python:gc__start/gc__done ({} notes)", plan.usdt_notes.size());
  return plan;
}

// The collection functions a version may have, most preferred first (see the table at the top of this file).
std::vector<std::string_view> collector_symbols(const PythonVersion& v) {
  if (!v.known() || v.major != 3) return {};
  if (v.minor == 8 || v.minor == 9) return {"collect"};
  if (v.minor >= 10 && v.minor <= 13) return {"gc_collect_main"};
  if (v.minor == 14) return {"gc_collect_main", "_PyGC_Collect"};
  return {};
}

// NAME itself or NAME.lto_priv.N.
bool is_same_function_name(std::string_view symbol, std::string_view name) {
  if (symbol == name) return true;
  constexpr std::string_view kLto = ".lto_priv.";
  if (symbol.size() <= name.size() + kLto.size() || symbol.substr(0, name.size()) != name ||
      symbol.substr(name.size(), kLto.size()) != kLto) {
    return false;
  }
  auto serial = symbol.substr(name.size() + kLto.size());
  return std::all_of(serial.begin(), serial.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::optional<GcProbePlan> try_symbol(const ElfFile& elf, const PythonVersion& version, std::string& why_not) {
  auto names = collector_symbols(version);
  if (names.empty()) {
    why_not = fmt::format("no known collection function for CPython {}", version.to_string());
    return std::nullopt;
  }
  if (version.free_threaded) {
    why_not = "free-threaded build: its collector (Python/gc_free_threading.c) is not mapped";
    return std::nullopt;
  }
  const auto symbols = elf.symbols();
  std::vector<std::string> clones;
  for (auto name : names) {
    std::vector<const ElfSymbol*> found;
    for (const auto& s : symbols) {
      if (s.type != STT_FUNC || s.shndx == SHN_UNDEF || s.value == 0) continue;
      if (is_same_function_name(s.name, name)) {
        if (std::none_of(found.begin(), found.end(), [&](auto* f) { return f->value == s.value; })) found.push_back(&s);
      } else if (s.name.size() > name.size() && s.name.compare(0, name.size(), name) == 0 &&
                 s.name[name.size()] == '.') {
        clones.push_back(s.name);
      }
    }
    if (found.size() > 1) {
      why_not = fmt::format("{} symbols named {}: ambiguous", found.size(), name);
      return std::nullopt;
    }
    if (found.empty()) continue;
    auto offset = elf.vaddr_to_offset(found[0]->value);
    if (!offset || !elf.is_executable_vaddr(found[0]->value)) {
      why_not = fmt::format("{} at {:#x} is not in executable file-backed code", found[0]->name, found[0]->value);
      return std::nullopt;
    }
    GcProbePlan plan;
    plan.method = GcMethod::Symbol;
    plan.version = version;
    plan.func_vaddr = found[0]->value;
    plan.func_offset = *offset;
    plan.symbol = found[0]->name;
    plan.generation = GcGenerationSource::IntArg;
    plan.collected = GcCountSource::ReturnInt;
    plan.generation_readable = true;
    plan.collected_readable = true;
    plan.detail = fmt::format("symbol {} at {:#x} (file offset {:#x}), CPython {}", plan.symbol, plan.func_vaddr,
                              plan.func_offset, version.to_string());
    if (version.at_least(3, 13) && name == "gc_collect_main") {
      plan.detail += "; automatic collections pass generation -1 (chosen inside)";
    }
    return plan;
  }
  if (!clones.empty()) {
    why_not = fmt::format("only compiler clones ({}) whose arguments cannot be trusted", clones.front());
  } else {
    why_not = fmt::format("no {} in the symbol tables", names.front());
  }
  return std::nullopt;
}

std::optional<GcProbePlan> try_methoddef(const ElfFile& elf, const PythonVersion& version, std::string& why_not) {
  if (elf.machine() != EM_X86_64 && elf.machine() != EM_AARCH64) {
    why_not = fmt::format("ELF machine {} not supported", elf.machine());
    return std::nullopt;
  }
  const auto strings = elf.find_cstring("collect");
  if (strings.empty()) {
    why_not = "no \"collect\" string";
    return std::nullopt;
  }
  const std::unordered_set<std::uint64_t> collect_addrs(strings.begin(), strings.end());
  const PointerReader ptrs(elf);

  // Entries whose ml_name points at a "collect" string: relocated words in PIE/shared objects; absolute words in
  // the data of non-PIE executables (scanned at pointer alignment).
  std::vector<std::uint64_t> entries;
  for (const auto& [where, target] : ptrs.relative()) {
    if (collect_addrs.count(target)) entries.push_back(where);
  }
  if (elf.type() == ET_EXEC) {
    for (const auto& s : elf.sections()) {
      if (s.type != SHT_PROGBITS || !(s.flags & SHF_ALLOC) || (s.flags & SHF_EXECINSTR)) continue;
      auto bytes = elf.section_bytes(s);
      const std::uint64_t skip = (8 - s.addr % 8) % 8;
      for (std::uint64_t i = skip; i + 8 <= bytes.size(); i += 8) {
        std::uint64_t v = 0;
        std::memcpy(&v, bytes.data() + i, 8);
        if (collect_addrs.count(v)) entries.push_back(s.addr + i);
      }
    }
  }
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end()), entries.end());

  std::vector<Candidate> gc_tables;
  int rejected = 0;
  for (auto entry : entries) {
    auto c = inspect_candidate(elf, ptrs, entry);
    if (c && looks_like_gc_table(*c)) {
      gc_tables.push_back(std::move(*c));
    } else {
      ++rejected;
    }
  }
  if (gc_tables.empty()) {
    why_not =
        fmt::format("no gc method table ({} \"collect\" entries, none with gc's neighbours and flags)", entries.size());
    return std::nullopt;
  }
  for (const auto& c : gc_tables) {
    if (c.func != gc_tables.front().func) {
      why_not = fmt::format("{} gc-like method tables with different collect functions ({:#x}, {:#x}): ambiguous",
                            gc_tables.size(), gc_tables.front().func, c.func);
      return std::nullopt;
    }
  }
  const Candidate& c = gc_tables.front();
  auto offset = elf.vaddr_to_offset(c.func);
  if (!offset) {
    why_not = fmt::format("gc.collect function {:#x} is not file-backed", c.func);
    return std::nullopt;
  }
  GcProbePlan plan;
  plan.method = GcMethod::MethodDef;
  plan.version = version;
  plan.func_vaddr = c.func;
  plan.func_offset = *offset;
  plan.symbol = "gc.collect";
  plan.generation = GcGenerationSource::Fastcall;
  plan.collected = GcCountSource::ReturnPyLong;
  plan.long_layout = pylong_layout_for(version);
  plan.generation_readable = plan.long_layout.has_value();
  plan.collected_readable = plan.long_layout.has_value();
  plan.sees_automatic_collections = false;
  plan.detail = fmt::format(
      "gc.collect() C function at {:#x} (file offset {:#x}) from the gc method table at {:#x} ({} methods, {} "
      "other \"collect\" entries rejected), CPython {}",
      plan.func_vaddr, plan.func_offset, c.entry, c.names.size(), rejected, version.to_string());
  if (!plan.long_layout) plan.detail += "; PyLong layout unknown: generation and count not readable";
  return plan;
}

}  // namespace

std::string_view gc_method_name(GcMethod method) {
  switch (method) {
    case GcMethod::Usdt:
      return "usdt";
    case GcMethod::Symbol:
      return "symbol";
    case GcMethod::MethodDef:
      return "methoddef";
  }
  return "unknown";
}

std::optional<GcMethod> parse_gc_method(std::string_view name) {
  for (auto m : {GcMethod::Usdt, GcMethod::Symbol, GcMethod::MethodDef}) {
    if (gc_method_name(m) == name) return m;
  }
  return std::nullopt;
}

std::string PythonVersion::to_string() const {
  if (!known()) return "unknown";
  std::string s = micro >= 0 ? fmt::format("{}.{}.{}", major, minor, micro) : fmt::format("{}.{}", major, minor);
  if (free_threaded) s += 't';
  if (debug) s += 'd';
  return s;
}

std::optional<PythonVersion> python_version_from_name(std::string_view file_name) {
  const std::string_view base = basename_of(file_name);
  constexpr std::string_view kPython = "python";
  for (auto at = base.rfind(kPython); at != std::string_view::npos;
       at = at == 0 ? std::string_view::npos : base.rfind(kPython, at - 1)) {
    std::size_t pos = at + kPython.size();
    PythonVersion v;
    v.major = parse_number(base, pos);
    if (v.major != 3 || pos >= base.size() || base[pos] != '.') continue;
    ++pos;
    v.minor = parse_number(base, pos);
    if (v.minor < 0) continue;
    // ABI flags (PEP 3149): t = free-threaded, d = debug; m (pymalloc) only before 3.8.
    while (pos < base.size() && (base[pos] == 't' || base[pos] == 'd' || base[pos] == 'm')) {
      if (base[pos] == 't') v.free_threaded = true;
      if (base[pos] == 'd') v.debug = true;
      ++pos;
    }
    if (pos != base.size() && base[pos] != '.' && base[pos] != '-' && base[pos] != '_') continue;
    v.source = "file name";
    return v;
  }
  return std::nullopt;
}

PythonVersion detect_python_version(const ElfFile& elf, std::string_view file_name) {
  std::optional<PythonVersion> v;
  if (auto so = elf.soname()) {
    v = python_version_from_name(*so);
    if (v) v->source = "soname";
  }
  if (!v) v = python_version_from_name(file_name);
  const auto found = rodata_versions(elf);
  if (v) {
    for (const auto& r : found) {
      if (r.version.major == v->major && r.version.minor == v->minor) {
        v->micro = r.version.micro;
        break;
      }
    }
    return *v;
  }
  // No name to go by: trust the data only when every plausible PY_VERSION agrees (bundled libraries carry version
  // strings of their own, e.g. "3.2.0", hence the minor range).
  std::optional<PythonVersion> agreed;
  for (const auto& r : found) {
    if (!r.standalone || r.version.minor < 6 || r.version.minor > 40) continue;
    if (agreed && (agreed->minor != r.version.minor || agreed->micro != r.version.micro)) return PythonVersion{};
    agreed = r.version;
  }
  return agreed.value_or(PythonVersion{});
}

std::optional<PyLongLayout> pylong_layout_for(const PythonVersion& version) {
  if (!version.known() || version.major != 3 || version.minor < 8 || version.free_threaded) return std::nullopt;
  // Versions after 3.14 have not been checked: no answer rather than a guess.
  if (version.minor > 14) return std::nullopt;
  PyLongLayout layout;
  layout.kind = version.minor >= 12 ? PyLongLayoutKind::LvTag : PyLongLayoutKind::SizeSigned;
  return layout;
}

std::optional<GcProbePlan> plan_gc_probe(const ElfFile& elf, std::string_view file_name, std::string& why_not,
                                         std::optional<GcMethod> force) {
  const PythonVersion version = detect_python_version(elf, file_name);
  why_not.clear();
  for (auto method : {GcMethod::Usdt, GcMethod::Symbol, GcMethod::MethodDef}) {
    if (force && *force != method) continue;
    std::string reason;
    std::optional<GcProbePlan> plan;
    switch (method) {
      case GcMethod::Usdt:
        plan = try_usdt(elf, version, reason);
        break;
      case GcMethod::Symbol:
        plan = try_symbol(elf, version, reason);
        break;
      case GcMethod::MethodDef:
        plan = try_methoddef(elf, version, reason);
        break;
    }
    if (plan) {
      why_not.clear();
      return plan;
    }
    if (!why_not.empty()) why_not += "; ";
    why_not += fmt::format("{}: {}", gc_method_name(method), reason);
  }
  return std::nullopt;
}

}  // namespace sp
