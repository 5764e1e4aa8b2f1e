#include "core/python/py_offsets.h"

#include <elf.h>
#include <fmt/core.h>

#include <charconv>
#include <cstring>

// Where the numbers come from: offsetof() on each version's own headers with Py_BUILD_CORE (Debian's
// /usr/include/python3.11 for 3.11.2; pyenv builds 3.10.13, 3.11.7, 3.12.1, 3.13.0), the same values as in
// ../shared/PYTHON_FRAMES.md, which also checked 3.11 against DWARF of python3.11-dbg. tests/unit/py_offsets_test.cpp
// recompiles the 3.11 check against the installed headers, and compares the 3.13 table with the _Py_DebugOffsets of
// a 3.13 libpython when one is installed.
//
//                          3.10   3.11   3.12   3.13
//   autoTSSkey._key         588    596   1548   2164
//   interpreters.head        32     40     40    632
//   threads.head              8     16     72   7344   (tstate_head in 3.10)
//   tstate.next               8      8      8      8
//   tstate.thread_id        176    152    136    152
//   tstate -> frame          24     56     56     72   (frame | cframe | cframe | current_frame)
//   cframe.current_frame      -      8      0      -
//   frame: code/back/locals 32/24/352  32/48/72  0/8/72  0/8/72
//   code: co_name            112    120    120    120
//   code: names tuple         72     96     96     96   (co_varnames | co_localsplusnames)
//   sizeof(PyASCIIObject)    48     48     40     40   (3.12 dropped wstr)
// For stacks (offsetof on the same headers, tests/unit/pyheaders checks them where headers are installed):
//   frame: instruction       96     56     56     56   (f_lasti int | prev_instr | prev_instr | instr_ptr)
//   frame: owner (char)       -      -     70     70   (FRAME_OWNED_BY_CSTACK = 3; 3.11 has no C-stack frames)
//   code: co_filename       104    112    112    112
//   code: co_firstlineno     40     72     68     68
//   code: co_linetable      120    136    136    136
//   code: co_qualname         -    128    128    128
//   code: co_code_adaptive    -    184    192    200
// Common to all four: ob_type 8, tuple ob_size 16 and ob_item 24, str length 16 and state 32, state bit fields
// interned:2 kind:3 compact:1 ascii:1 (compact = bit 5, ascii = bit 6).
namespace sp {
namespace {

PyFrameOffsets common() {
  PyFrameOffsets o;
  o.ts_next = 8;
  o.ob_type = 8;
  o.tuple_size = 16;
  o.tuple_items = 24;
  o.str_length = 16;
  o.str_state = 32;
  o.state_compact = 1u << 5;
  o.state_ascii = 1u << 6;
  return o;
}

std::optional<PyFrameOffsets> table(int minor) {
  PyFrameOffsets o = common();
  switch (minor) {
    case 10:
      o.tss_key = 588, o.interp_head = 32, o.threads_head = 8, o.ts_thread_id = 176, o.ts_frame = 24;
      o.f_code = 32, o.f_back = 24, o.f_locals = 352, o.co_name = 112, o.co_varnames = 72, o.str_data = 48;
      o.f_instr = 96, o.co_filename = 104, o.co_firstlineno = 40, o.co_linetable = 120;
      break;
    case 11:
      o.tss_key = 596, o.interp_head = 40, o.threads_head = 16, o.ts_thread_id = 152, o.ts_frame = 56;
      o.cframe_current = 8;
      o.f_code = 32, o.f_back = 48, o.f_locals = 72, o.co_name = 120, o.co_varnames = 96, o.str_data = 48;
      o.f_instr = 56, o.instr_is_pointer = true, o.co_code_adaptive = 184;
      o.co_qualname = 128, o.co_filename = 112, o.co_firstlineno = 72, o.co_linetable = 136;
      break;
    case 12:
      o.tss_key = 1548, o.interp_head = 40, o.threads_head = 72, o.ts_thread_id = 136, o.ts_frame = 56;
      o.cframe_current = 0;
      o.f_code = 0, o.f_back = 8, o.f_locals = 72, o.co_name = 120, o.co_varnames = 96, o.str_data = 40;
      o.f_instr = 56, o.instr_is_pointer = true, o.f_owner = 70, o.co_code_adaptive = 192;
      o.co_qualname = 128, o.co_filename = 112, o.co_firstlineno = 68, o.co_linetable = 136;
      break;
    case 13:
      o.tss_key = 2164, o.interp_head = 632, o.threads_head = 7344, o.ts_thread_id = 152, o.ts_frame = 72;
      o.f_code = 0, o.f_back = 8, o.f_locals = 72, o.co_name = 120, o.co_varnames = 96, o.str_data = 40;
      o.f_instr = 56, o.instr_is_pointer = true, o.f_owner = 70, o.co_code_adaptive = 200;
      o.co_qualname = 128, o.co_filename = 112, o.co_firstlineno = 68, o.co_linetable = 136;
      break;
    default:
      return std::nullopt;
  }
  o.source = fmt::format("table 3.{}", minor);
  return o;
}

std::uint64_t word(std::span<const std::uint8_t> b, std::size_t index) {
  std::uint64_t v = 0;
  std::memcpy(&v, b.data() + index * 8, 8);
  return v;
}

bool fits_u32(std::uint64_t v) { return v <= 0xffffffffu; }

}  // namespace

std::optional<PyFrameOffsets> py_offsets_for_version(const PythonVersion& version, std::string& why_not) {
  if (!version.known()) {
    why_not = "CPython version unknown (no version in the file's name, soname or read-only data)";
    return std::nullopt;
  }
  if (version.free_threaded) {
    why_not = fmt::format("CPython {} is a free-threaded build: its object layout is not in the offset table",
                          version.to_string());
    return std::nullopt;
  }
  if (version.debug) {
    why_not = fmt::format("CPython {} is a debug (Py_DEBUG) build: its object layout is not in the offset table",
                          version.to_string());
    return std::nullopt;
  }
  auto t = version.major == 3 ? table(version.minor) : std::nullopt;
  if (!t) {
    why_not = fmt::format("CPython {} has no offset table (3.10 to 3.13 are known)", version.to_string());
    return std::nullopt;
  }
  return t;
}

// Word indexes into the 3.13 struct (every member is a uint64_t; sub-structs start with their own `size`).
std::optional<PyDebugOffsets> parse_py_debug_offsets(std::span<const std::uint8_t> bytes, std::string& error) {
  if (bytes.size() < 24 || std::memcmp(bytes.data(), "xdebugpy", 8) != 0) {
    error = "no _Py_DebugOffsets cookie at the start of _PyRuntime";
    return std::nullopt;
  }
  PyDebugOffsets d;
  d.version = word(bytes, 1);
  const auto major = (d.version >> 24) & 0xff, minor = (d.version >> 16) & 0xff;
  if (major != 3 || minor != 13) {
    error = fmt::format("_Py_DebugOffsets of version {}.{}: only the 3.13 layout is known", major, minor);
    return std::nullopt;
  }
  if (bytes.size() < kPyDebugOffsets313Size) {
    error = fmt::format("_Py_DebugOffsets truncated ({} of {} bytes)", bytes.size(), kPyDebugOffsets313Size);
    return std::nullopt;
  }
  d.free_threaded = word(bytes, 2) != 0;
  d.interp_head = word(bytes, 5);
  d.threads_head = word(bytes, 9);
  d.ts_next = word(bytes, 21);
  d.ts_current_frame = word(bytes, 23);
  d.ts_thread_id = word(bytes, 24);
  d.f_previous = word(bytes, 29);
  d.f_executable = word(bytes, 30);
  d.f_instr_ptr = word(bytes, 31);
  d.f_localsplus = word(bytes, 32);
  d.f_owner = word(bytes, 33);
  d.co_filename = word(bytes, 35);
  d.co_name = word(bytes, 36);
  d.co_qualname = word(bytes, 37);
  d.co_linetable = word(bytes, 38);
  d.co_firstlineno = word(bytes, 39);
  d.co_code_adaptive = word(bytes, 43);
  d.co_localsplusnames = word(bytes, 41);
  d.ob_type = word(bytes, 45);
  d.tuple_items = word(bytes, 51);
  d.tuple_size = word(bytes, 52);
  d.str_state = word(bytes, 68);
  d.str_length = word(bytes, 69);
  d.str_ascii_size = word(bytes, 70);
  // Sizes of the structs themselves (words 3, 6, 19, 28, 34): every offset must lie inside its struct.
  const std::uint64_t runtime_size = word(bytes, 3), interp_size = word(bytes, 6), ts_size = word(bytes, 19),
                      frame_size = word(bytes, 28), code_size = word(bytes, 34);
  const bool sane = d.interp_head < runtime_size && d.threads_head < interp_size && d.ts_next < ts_size &&
                    d.ts_current_frame < ts_size && d.ts_thread_id < ts_size && d.f_previous < frame_size &&
                    d.f_executable < frame_size && d.f_localsplus <= frame_size && d.co_name < code_size &&
                    d.co_localsplusnames < code_size && d.f_instr_ptr < frame_size && d.f_owner < frame_size &&
                    d.co_filename < code_size && d.co_qualname < code_size && d.co_linetable < code_size &&
                    d.co_firstlineno < code_size && d.co_code_adaptive <= code_size && runtime_size < (1u << 20) && interp_size < (1u << 20);
  if (!sane) {
    error = "_Py_DebugOffsets holds offsets outside their structs";
    return std::nullopt;
  }
  return d;
}

std::optional<DescAttributionPlan> plan_desc_attribution(const ElfFile& python, std::string_view file_name,
                                                         std::string& why_not) {
  DescAttributionPlan plan;
  plan.version = detect_python_version(python, file_name);
  auto offsets = py_offsets_for_version(plan.version, why_not);
  if (!offsets) return std::nullopt;
  struct Need {
    const char* name;
    std::uint64_t* out;
  };
  for (const Need& n : {Need{"_PyRuntime", &plan.runtime_vaddr}, Need{"PyUnicode_Type", &plan.str_type_vaddr},
                        Need{"PyCode_Type", &plan.code_type_vaddr}}) {
    auto sym = python.find_symbol(n.name);
    if (!sym || sym->value == 0 || sym->type != STT_OBJECT) {
      why_not = fmt::format("CPython {}: no data symbol {} in {}", plan.version.to_string(), n.name, file_name);
      return std::nullopt;
    }
    *n.out = sym->value;
  }
  if (plan.version.minor >= 13) {
    std::string error;
    auto bytes = python.read_vaddr(plan.runtime_vaddr, kPyDebugOffsets313Size);
    auto d = bytes ? parse_py_debug_offsets(*bytes, error) : std::nullopt;
    if (d && d->free_threaded) {
      why_not = fmt::format("CPython {}: _Py_DebugOffsets says free-threaded build", plan.version.to_string());
      return std::nullopt;
    }
    const bool fits = d && fits_u32(d->interp_head) && fits_u32(d->threads_head) && fits_u32(d->ts_next) &&
                      fits_u32(d->ts_thread_id) && fits_u32(d->ts_current_frame) && fits_u32(d->f_previous) &&
                      fits_u32(d->f_executable) && fits_u32(d->f_localsplus) && fits_u32(d->co_name) &&
                      fits_u32(d->co_localsplusnames) && fits_u32(d->ob_type) && fits_u32(d->tuple_items) &&
                      fits_u32(d->tuple_size) && fits_u32(d->str_state) && fits_u32(d->str_length) &&
                      fits_u32(d->str_ascii_size) && fits_u32(d->f_instr_ptr) && fits_u32(d->f_owner) &&
                      fits_u32(d->co_filename) && fits_u32(d->co_qualname) && fits_u32(d->co_linetable) &&
                      fits_u32(d->co_firstlineno) && fits_u32(d->co_code_adaptive);
    if (fits) {
      // The binary's own description of itself wins over the table where both speak.
      auto& o = *offsets;
      o.interp_head = static_cast<std::uint32_t>(d->interp_head);
      o.threads_head = static_cast<std::uint32_t>(d->threads_head);
      o.ts_next = static_cast<std::uint32_t>(d->ts_next);
      o.ts_thread_id = static_cast<std::uint32_t>(d->ts_thread_id);
      o.ts_frame = static_cast<std::uint32_t>(d->ts_current_frame);
      o.cframe_current.reset();
      o.f_back = static_cast<std::uint32_t>(d->f_previous);
      o.f_code = static_cast<std::uint32_t>(d->f_executable);
      o.f_locals = static_cast<std::uint32_t>(d->f_localsplus);
      o.co_name = static_cast<std::uint32_t>(d->co_name);
      o.co_varnames = static_cast<std::uint32_t>(d->co_localsplusnames);
      o.ob_type = static_cast<std::uint32_t>(d->ob_type);
      o.tuple_items = static_cast<std::uint32_t>(d->tuple_items);
      o.tuple_size = static_cast<std::uint32_t>(d->tuple_size);
      o.str_state = static_cast<std::uint32_t>(d->str_state);
      o.str_length = static_cast<std::uint32_t>(d->str_length);
      o.str_data = static_cast<std::uint32_t>(d->str_ascii_size);
      o.f_instr = static_cast<std::uint32_t>(d->f_instr_ptr);
      o.f_owner = static_cast<std::uint32_t>(d->f_owner);
      o.co_filename = static_cast<std::uint32_t>(d->co_filename);
      o.co_qualname = static_cast<std::uint32_t>(d->co_qualname);
      o.co_linetable = static_cast<std::uint32_t>(d->co_linetable);
      o.co_firstlineno = static_cast<std::uint32_t>(d->co_firstlineno);
      o.co_code_adaptive = static_cast<std::uint32_t>(d->co_code_adaptive);
      o.source = fmt::format("_Py_DebugOffsets {:#x} + table 3.{}", d->version, plan.version.minor);
    }
  }
  plan.offsets = *offsets;
  plan.detail = fmt::format("CPython {} (version from {}), offsets from {}", plan.version.to_string(),
                            plan.version.source.empty() ? "file name" : plan.version.source, plan.offsets.source);
  return plan;
}

std::vector<MappedRange> parse_mapped_ranges(std::string_view text) {
  std::vector<MappedRange> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    // start-end perms offset dev inode path
    std::string_view fields[5];
    std::size_t i = 0;
    bool ok = true;
    for (auto& f : fields) {
      while (i < line.size() && line[i] == ' ') ++i;
      std::size_t start = i;
      while (i < line.size() && line[i] != ' ') ++i;
      if (i == start) {
        ok = false;
        break;
      }
      f = line.substr(start, i - start);
    }
    if (!ok) continue;
    while (i < line.size() && line[i] == ' ') ++i;
    MappedRange r;
    auto dash = fields[0].find('-');
    if (dash == std::string_view::npos) continue;
    auto hex = [](std::string_view s, std::uint64_t& v) {
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
      return ec == std::errc() && p == s.data() + s.size() && !s.empty();
    };
    if (!hex(fields[0].substr(0, dash), r.start) || !hex(fields[2], r.offset)) continue;
    r.path = std::string(line.substr(i));
    constexpr std::string_view kDeleted = " (deleted)";
    if (r.path.size() >= kDeleted.size() && r.path.compare(r.path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
      r.path.resize(r.path.size() - kDeleted.size());
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::optional<std::uint64_t> load_base(const ElfFile& elf, const std::vector<MappedRange>& maps, std::string_view path) {
  return load_base(elf.type(), elf.segments(), maps, path);
}

std::optional<std::uint64_t> load_base(std::uint16_t elf_type, const std::vector<ElfSegment>& segments,
                                       const std::vector<MappedRange>& maps, std::string_view path) {
  if (elf_type == ET_EXEC) return 0;
  constexpr std::uint64_t kPage = 4096;
  for (const auto& m : maps) {
    if (m.path != path) continue;
    for (const auto& seg : segments) {
      if (seg.type != PT_LOAD) continue;
      // The loader maps each PT_LOAD from its page-aligned file offset to its page-aligned address + base.
      if ((seg.offset & ~(kPage - 1)) != m.offset) continue;
      const std::uint64_t vpage = seg.vaddr & ~(kPage - 1);
      if (m.start < vpage) continue;
      return m.start - vpage;
    }
  }
  return std::nullopt;
}

std::optional<std::pair<int, int>> glibc_version(const ElfFile& libc) {
  const ElfSection* dynstr = libc.find_section(".dynstr");
  if (!dynstr) return std::nullopt;
  auto bytes = libc.section_bytes(*dynstr);
  std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::optional<std::pair<int, int>> best;
  constexpr std::string_view kPrefix = "GLIBC_";
  for (std::size_t pos = s.find(kPrefix); pos != std::string_view::npos; pos = s.find(kPrefix, pos + 1)) {
    if (pos > 0 && s[pos - 1] != '\0') continue;  // the whole string, not a suffix ("GLIBC_PRIVATE" is skipped below)
    auto end = s.find('\0', pos);
    if (end == std::string_view::npos) break;
    std::string_view v = s.substr(pos + kPrefix.size(), end - pos - kPrefix.size());
    int major = 0, minor = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), major);
    if (ec != std::errc() || p == v.data() + v.size() || *p != '.') continue;
    auto [q, ec2] = std::from_chars(p + 1, v.data() + v.size(), minor);
    if (ec2 != std::errc() || q != v.data() + v.size()) continue;  // "2.2.5" style names are older than any 2.N we need
    if (!best || std::pair(major, minor) > *best) best = std::pair(major, minor);
  }
  return best;
}

std::optional<std::uint32_t> glibc_specific_offset(const ElfFile& libc, std::string& detail) {
  auto v = glibc_version(libc);
  if (!v) {
    detail = "not glibc (no GLIBC_2.N version names): thread states are found by walking the thread list";
    return std::nullopt;
  }
  // struct pthread's specific_1stblock: 0x310 on x86-64 in glibc 2.36 (Debian bookworm, also the base of the
  // python:3.x-slim images), read from the TCB of a live thread by tests/unit/py_offsets_test.cpp. Other versions
  // have not been checked: they use the thread-list walk, which needs no glibc internals.
  if (*v == std::pair(2, 36)) {
    detail = "glibc 2.36: thread states through the TSS key";
    return 0x310u;
  }
  detail = fmt::format("glibc {}.{} (TLS layout not checked): thread states are found by walking the thread list",
                       v->first, v->second);
  return std::nullopt;
}

}  // namespace sp
