// The GC locator against real CPython binaries on this machine (Debian's 3.11 with and without its USDT notes,
// cross-checked against Debian's debug symbols; unstripped 3.8-3.13 builds where present) and against the synthetic
// files of tests/data/elf (non-PIE, PIE, shared object, stripped, decoy and ambiguous tables, LTO-named symbols).
#include "core/python/gc_locator.h"

#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include "../../common/require.h"
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/python/elf_file.h"

namespace {

namespace fs = std::filesystem;

const std::string kElfData = std::string(SP_TEST_DATA_DIR) + "/elf/";
constexpr const char* kDebianPython = "/usr/bin/python3.11";
constexpr const char* kDebianLibpython = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0";
// Debian's python3.11-dbg ships the debug files of the two binaries above, by build id.
constexpr const char* kDebianPythonDebug = "/usr/lib/debug/.build-id/c5/61f3aa7232f2bd6ac6d56bd475f1c154a00486.debug";
constexpr const char* kDebianLibpythonDebug =
    "/usr/lib/debug/.build-id/dc/7ea6fdad516ee27906e1c1fa87c48af65bc294.debug";

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::optional<sp::ElfFile> load(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string error;
  auto f = sp::ElfFile::from_fd(fd, error);
  close(fd);
  return f;
}

// Value of a .symtab function symbol, for cross-checks against an independent source.
std::optional<std::uint64_t> symbol_value(const sp::ElfFile& elf, std::string_view name) {
  for (const auto& s : elf.symbols()) {
    if (s.name == name && s.type == STT_FUNC && s.shndx != SHN_UNDEF) return s.value;
  }
  return std::nullopt;
}

// A private temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sp-gcloc-XXXXXX").string();
    if (mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs a binutils command that writes `out`; false (with the command in the message) when it fails.
testing::AssertionResult run_tool(const std::string& command, const std::string& out) {
  if (std::system((command + " 2>/dev/null").c_str()) != 0 || !fs::exists(out)) {
    return testing::AssertionFailure() << "failed: " << command;
  }
  return testing::AssertionSuccess();
}

}  // namespace

TEST(PythonVersion, FromFileNames) {
  auto v = sp::python_version_from_name("/usr/bin/python3.11");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->to_string(), "3.11");
  v = sp::python_version_from_name("/usr/local/lib/libpython3.12.so.1.0");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->minor, 12);
  EXPECT_FALSE(v->free_threaded);
  v = sp::python_version_from_name("libpython3.13t.so.1.0");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->free_threaded);
  EXPECT_EQ(v->to_string(), "3.13t");
  v = sp::python_version_from_name("python3.11d");
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->debug);
  v = sp::python_version_from_name("/opt/python3.9/bin/python3.10");  // only the last component counts
  ASSERT_TRUE(v);
  EXPECT_EQ(v->minor, 10);
  for (const char* none : {"python3", "python", "libpython3.so", "/opt/python3.9/bin/python", "python3.x", "",
                           "python3.11x", "pythonista3.11"}) {
    EXPECT_FALSE(sp::python_version_from_name(none)) << none;
  }
}

TEST(PythonVersion, DetectsDebianBuildsFromNameSonameAndRodata) {
  auto exe = load(kDebianPython);
  ASSERT_TRUE(exe);
  auto v = sp::detect_python_version(*exe, kDebianPython);
  EXPECT_EQ(v.to_string(), "3.11.2");
  EXPECT_EQ(v.source, "file name");
  // Under a name that says nothing (e.g. /usr/local/bin/python), PY_VERSION in .rodata still tells.
  v = sp::detect_python_version(*exe, "/usr/bin/python");
  EXPECT_EQ(v.to_string(), "3.11.2");
  EXPECT_EQ(v.source, "rodata");

  auto lib = load(kDebianLibpython);
  ASSERT_TRUE(lib);
  EXPECT_EQ(lib->soname(), "libpython3.11.so.1.0");
  v = sp::detect_python_version(*lib, "/proc/1/root/whatever.so");
  EXPECT_EQ(v.to_string(), "3.11.2");
  EXPECT_EQ(v.source, "soname");
}

TEST(PythonVersion, PyLongLayoutPerVersion) {
  sp::PythonVersion v;
  EXPECT_FALSE(sp::pylong_layout_for(v));  // unknown
  v.major = 3;
  for (int minor : {8, 9, 10, 11}) {
    v.minor = minor;
    auto l = sp::pylong_layout_for(v);
    ASSERT_TRUE(l) << minor;
    EXPECT_EQ(l->kind, sp::PyLongLayoutKind::SizeSigned);
    EXPECT_EQ(l->size_offset, 16u);
    EXPECT_EQ(l->digit_offset, 24u);
  }
  for (int minor : {12, 13, 14}) {
    v.minor = minor;
    auto l = sp::pylong_layout_for(v);
    ASSERT_TRUE(l) << minor;
    EXPECT_EQ(l->kind, sp::PyLongLayoutKind::LvTag);
    EXPECT_EQ(l->size_offset, 16u);
    EXPECT_EQ(l->digit_offset, 24u);
    EXPECT_EQ(l->digit_bits, 30u);
  }
  v.minor = 7;
  EXPECT_FALSE(sp::pylong_layout_for(v));
  v.minor = 15;  // not checked yet: no guess
  EXPECT_FALSE(sp::pylong_layout_for(v));
  v.minor = 13;
  v.free_threaded = true;
  EXPECT_FALSE(sp::pylong_layout_for(v));
}

TEST(GcLocator, MethodNamesRoundTrip) {
  for (auto m : {sp::GcMethod::Usdt, sp::GcMethod::Symbol, sp::GcMethod::MethodDef}) {
    EXPECT_EQ(sp::parse_gc_method(sp::gc_method_name(m)), m);
  }
  EXPECT_EQ(sp::gc_method_name(sp::GcMethod::MethodDef), "methoddef");
  EXPECT_FALSE(sp::parse_gc_method("kprobe"));
}

TEST(GcLocator, DebianPythonUsesUsdt) {
  auto elf = load(kDebianPython);
  ASSERT_TRUE(elf);
  std::string why;
  auto plan = sp::plan_gc_probe(*elf, kDebianPython, why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::Usdt);
  EXPECT_EQ(plan->version.to_string(), "3.11.2");
  ASSERT_EQ(plan->usdt_notes.size(), 2u);
  for (const auto& n : plan->usdt_notes) {
    EXPECT_EQ(n.provider, "python");
    EXPECT_NE(n.pc, 0u);
    EXPECT_NE(n.semaphore, 0u);  // Debian's probes have semaphores: libbpf must set them
  }
  EXPECT_TRUE(plan->generation_readable);
  EXPECT_TRUE(plan->collected_readable);
  EXPECT_EQ(plan->generation, sp::GcGenerationSource::UsdtArg);

  // Debian strips .symtab: forcing the symbol method says so instead of guessing.
  plan = sp::plan_gc_probe(*elf, kDebianPython, why, sp::GcMethod::Symbol);
  EXPECT_FALSE(plan);
  EXPECT_NE(why.find("symbol: no gc_collect_main"), std::string::npos) << why;
}

// Without its SDT notes, Debian's non-PIE python3.11 falls through to the method table (absolute pointers). The
// answer must be the function Debian's debug symbols call gc_collect (LTO-renamed gc_collect.lto_priv.0).
TEST(GcLocator, DebianPythonWithoutNotesUsesMethodDefMatchingDebugSymbols) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string copy = dir.path() + "/python3.11";
  ASSERT_TRUE(run_tool(std::string("objcopy --remove-section=.note.stapsdt ") + kDebianPython + " " + copy, copy));
  auto elf = load(copy);
  ASSERT_TRUE(elf);
  EXPECT_EQ(elf->type(), ET_EXEC);
  std::string why;
  auto plan = sp::plan_gc_probe(*elf, copy, why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::MethodDef) << plan->detail;
  EXPECT_EQ(plan->generation, sp::GcGenerationSource::Fastcall);
  EXPECT_EQ(plan->collected, sp::GcCountSource::ReturnPyLong);
  ASSERT_TRUE(plan->long_layout);
  EXPECT_EQ(plan->long_layout->kind, sp::PyLongLayoutKind::SizeSigned);
  EXPECT_TRUE(plan->generation_readable);
  EXPECT_FALSE(plan->sees_automatic_collections);
  EXPECT_EQ(elf->vaddr_to_offset(plan->func_vaddr), plan->func_offset);
  EXPECT_TRUE(elf->is_executable_vaddr(plan->func_vaddr));

  // The same answer from a --strip-all copy (what python:3.x-slim ships), forced past its USDT notes.
  const std::string stripped = dir.path() + "/python3.11-stripped";
  ASSERT_TRUE(run_tool(std::string("strip --strip-all -o ") + stripped + " " + kDebianPython, stripped));
  auto selt = load(stripped);
  ASSERT_TRUE(selt);
  auto splan = sp::plan_gc_probe(*selt, "python3.11", why, sp::GcMethod::MethodDef);
  ASSERT_TRUE(splan) << why;
  EXPECT_EQ(splan->func_vaddr, plan->func_vaddr);

  auto debug = load(kDebianPythonDebug);
  if (!debug) SP_SKIP_UNLESS_BPF_REQUIRED(std::string("no ") + kDebianPythonDebug + " (apt-get install python3.11-dbg): cross-check skipped");
  EXPECT_EQ(symbol_value(*debug, "gc_collect.lto_priv.0"), plan->func_vaddr) << plan->detail;
}

// The shared library: USDT as shipped; without notes, the method table through R_X86_64_RELATIVE relocations.
TEST(GcLocator, DebianLibpythonUsdtThenMethodDefThroughRelocations) {
  auto elf = load(kDebianLibpython);
  ASSERT_TRUE(elf);
  std::string why;
  auto plan = sp::plan_gc_probe(*elf, kDebianLibpython, why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::Usdt);

  TempDir dir;
  const std::string copy = dir.path() + "/libpython3.11.so.1.0";
  ASSERT_TRUE(run_tool(std::string("objcopy --remove-section=.note.stapsdt ") + kDebianLibpython + " " + copy, copy));
  auto lib = load(copy);
  ASSERT_TRUE(lib);
  plan = sp::plan_gc_probe(*lib, copy, why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::MethodDef) << plan->detail;
  EXPECT_EQ(plan->version.to_string(), "3.11.2");

  auto debug = load(kDebianLibpythonDebug);
  if (!debug)
    SP_SKIP_UNLESS_BPF_REQUIRED(std::string("no ") + kDebianLibpythonDebug + " (apt-get install python3.11-dbg): cross-check skipped");
  EXPECT_EQ(symbol_value(*debug, "gc_collect"), plan->func_vaddr) << plan->detail;
}

// Unstripped shared builds of several versions (pyenv's, when present on the machine): the symbol method finds the
// version's collection function, and the method table's answer equals the gc_collect symbol in every version.
TEST(GcLocator, UnstrippedBuildsOfEachVersion) {
  struct Case {
    const char* lib;
    const char* symbol;  // expected symbol-method answer; nullptr: only clones, so methoddef wins
    sp::PyLongLayoutKind layout;
    int micro;
  };
  const Case cases[] = {
      {"/root/.pyenv/versions/3.8.18/lib/libpython3.8.so.1.0", nullptr, sp::PyLongLayoutKind::SizeSigned, 18},
      {"/root/.pyenv/versions/3.9.18/lib/libpython3.9.so.1.0", "collect", sp::PyLongLayoutKind::SizeSigned, 18},
      {"/root/.pyenv/versions/3.10.13/lib/libpython3.10.so.1.0", "gc_collect_main", sp::PyLongLayoutKind::SizeSigned,
       13},
      {"/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0", "gc_collect_main", sp::PyLongLayoutKind::SizeSigned, 7},
      {"/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0", "gc_collect_main", sp::PyLongLayoutKind::LvTag, 1},
      {"/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0", "gc_collect_main", sp::PyLongLayoutKind::LvTag, 0},
  };
  int tested = 0;
  for (const auto& c : cases) {
    auto elf = load(c.lib);
    if (!elf) continue;
    ++tested;
    SCOPED_TRACE(c.lib);
    std::string why;
    auto plan = sp::plan_gc_probe(*elf, c.lib, why);
    ASSERT_TRUE(plan) << why;
    // The micro version comes from PY_VERSION merged into the tail of the install prefix string.
    EXPECT_EQ(plan->version.micro, c.micro);
    if (c.symbol) {
      EXPECT_EQ(plan->method, sp::GcMethod::Symbol) << plan->detail;
      EXPECT_EQ(plan->symbol, c.symbol);
      EXPECT_EQ(symbol_value(*elf, c.symbol), plan->func_vaddr);
      EXPECT_EQ(plan->generation, sp::GcGenerationSource::IntArg);
      EXPECT_EQ(plan->collected, sp::GcCountSource::ReturnInt);
    } else {
      EXPECT_EQ(plan->method, sp::GcMethod::MethodDef) << plan->detail;
      auto forced = sp::plan_gc_probe(*elf, c.lib, why, sp::GcMethod::Symbol);
      EXPECT_FALSE(forced);
      EXPECT_NE(why.find("only compiler clones"), std::string::npos) << why;
    }
    auto md = sp::plan_gc_probe(*elf, c.lib, why, sp::GcMethod::MethodDef);
    ASSERT_TRUE(md) << why;
    EXPECT_EQ(symbol_value(*elf, "gc_collect"), md->func_vaddr) << md->detail;
    ASSERT_TRUE(md->long_layout);
    EXPECT_EQ(md->long_layout->kind, c.layout);
  }
  if (tested == 0) SP_SKIP_UNLESS_BPF_REQUIRED("no unstripped CPython builds under /root/.pyenv/versions");
}

TEST(GcLocator, SyntheticMethodTablesInEveryLinkMode) {
  auto pie = load(kElfData + "fake_gc_pie");
  ASSERT_TRUE(pie);
  const auto expected_pie = symbol_value(*pie, "fake_gc_collect");
  ASSERT_TRUE(expected_pie);
  for (const char* name : {"fake_gc_nopie", "fake_gc_pie", "fake_gc_shared.so", "fake_gc_pie_stripped"}) {
    SCOPED_TRACE(name);
    auto elf = load(kElfData + name);
    ASSERT_TRUE(elf);
    std::string why;
    auto plan = sp::plan_gc_probe(*elf, std::string("/x/libpython3.12.so.1.0/") + name, why);
    // The name carries no version (only the last component counts), the fixture's PY_VERSION "3.11.2" does.
    ASSERT_TRUE(plan) << why;
    EXPECT_EQ(plan->method, sp::GcMethod::MethodDef);
    EXPECT_EQ(plan->version.to_string(), "3.11.2");
    const auto own = symbol_value(*elf, "fake_gc_collect");
    // The decoy table's "collect" (same flags, foreign neighbours) was seen and rejected.
    EXPECT_NE(plan->detail.find("1 other \"collect\" entries rejected"), std::string::npos) << plan->detail;
    EXPECT_EQ(plan->func_vaddr, own ? *own : *expected_pie) << plan->detail;
    EXPECT_EQ(elf->vaddr_to_offset(plan->func_vaddr), plan->func_offset);
  }
}

TEST(GcLocator, RefusesToChooseBetweenTwoGcTables) {
  auto elf = load(kElfData + "fake_gc_two_tables");
  ASSERT_TRUE(elf);
  std::string why;
  auto plan = sp::plan_gc_probe(*elf, "python3.11", why);
  EXPECT_FALSE(plan);
  EXPECT_NE(why.find("ambiguous"), std::string::npos) << why;
  EXPECT_NE(why.find("usdt: no python:gc__start note"), std::string::npos) << why;
}

TEST(GcLocator, SymbolMethodAcceptsLtoNamesAndRefusesClones) {
  auto elf = load(kElfData + "fake_gc_symbols");
  ASSERT_TRUE(elf);
  std::string why;
  auto plan = sp::plan_gc_probe(*elf, "python3.11", why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::Symbol);
  EXPECT_EQ(plan->symbol, "gc_collect_main.lto_priv.0");  // not the .cold part
  EXPECT_EQ(plan->func_vaddr, symbol_value(*elf, "gc_collect_main.lto_priv.0"));
  EXPECT_EQ(plan->generation, sp::GcGenerationSource::IntArg);
  // 3.8 looks for `collect`, which this file lacks: the method table takes over.
  plan = sp::plan_gc_probe(*elf, "python3.8", why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::MethodDef);
  // A version with no known collection function: symbol says so rather than guessing.
  EXPECT_FALSE(sp::plan_gc_probe(*elf, "python3.15", why, sp::GcMethod::Symbol));
  EXPECT_NE(why.find("no known collection function for CPython 3.15"), std::string::npos) << why;
  // Free-threaded builds have another collector.
  EXPECT_FALSE(sp::plan_gc_probe(*elf, "python3.13t", why, sp::GcMethod::Symbol));

  auto clones = load(kElfData + "fake_gc_clones");
  ASSERT_TRUE(clones);
  plan = sp::plan_gc_probe(*clones, "python3.8", why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::MethodDef);
  EXPECT_FALSE(sp::plan_gc_probe(*clones, "python3.8", why, sp::GcMethod::Symbol));
  EXPECT_NE(why.find("only compiler clones (collect.constprop.0)"), std::string::npos) << why;
}

TEST(GcLocator, UnknownVersionStillFindsTheFunctionButCannotReadArguments) {
  // Strip PY_VERSION by handing a file without it: the Debian copy under a neutral name still has it, so use the
  // fixture with its version string overwritten.
  auto bytes = read_bytes(kElfData + "fake_gc_pie_stripped");
  ASSERT_FALSE(bytes.empty());
  const std::string needle("3.11.2");
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  std::fill(it, it + static_cast<std::ptrdiff_t>(needle.size()), 'x');
  std::string error;
  auto elf = sp::ElfFile::parse(bytes, error);
  ASSERT_TRUE(elf) << error;
  std::string why;
  auto plan = sp::plan_gc_probe(*elf, "python", why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->method, sp::GcMethod::MethodDef);
  EXPECT_FALSE(plan->version.known());
  EXPECT_FALSE(plan->long_layout);
  EXPECT_FALSE(plan->generation_readable);
  EXPECT_FALSE(plan->collected_readable);
}

// Truncated and corrupted files give "no plan" (or some plan), never a crash or a read out of bounds.
TEST(GcLocator, HostileInputNeverCrashes) {
  for (const char* name : {"fake_gc_pie", "fake_gc_nopie", "fake_gc_shared.so"}) {
    const auto bytes = read_bytes(kElfData + name);
    ASSERT_FALSE(bytes.empty()) << name;
    for (std::size_t len = 0; len < bytes.size(); len += 97) {
      std::string error, why;
      auto elf = sp::ElfFile::parse(std::span(bytes.data(), len), error);
      if (elf) (void)sp::plan_gc_probe(*elf, "python3.11", why);
    }
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 300; ++round) {
      auto mutated = bytes;
      for (int k = 0; k < 16; ++k) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        mutated[(state >> 33) % mutated.size()] = static_cast<std::uint8_t>(state >> 17);
      }
      std::string error, why;
      auto elf = sp::ElfFile::parse(mutated, error);
      if (elf) (void)sp::plan_gc_probe(*elf, "python3.11", why);
    }
  }
}

TEST(ElfFile, ReadsRelocationsStringsAndSoname) {
  auto pie = load(kElfData + "fake_gc_pie");
  ASSERT_TRUE(pie);
  EXPECT_FALSE(pie->soname());
  const auto strings = pie->find_cstring("collect");
  ASSERT_EQ(strings.size(), 1u);  // both tables' "collect" literals are merged into one
  EXPECT_EQ(pie->cstring_at_vaddr(strings[0]), "collect");
  EXPECT_TRUE(pie->find_cstring("no such string anywhere").empty());
  EXPECT_TRUE(pie->find_cstring("").empty());
  int relative_to_collect = 0;
  for (const auto& r : pie->relocations()) {
    if (pie->is_relative_relocation(r.type) && static_cast<std::uint64_t>(r.addend) == strings[0]) {
      ++relative_to_collect;
      EXPECT_EQ(r.symbol, 0u);
    }
  }
  EXPECT_EQ(relative_to_collect, 2);  // gc's entry and the decoy's
  auto fn = symbol_value(*pie, "fake_gc_collect");
  ASSERT_TRUE(fn);
  EXPECT_TRUE(pie->is_executable_vaddr(*fn));
  EXPECT_FALSE(pie->is_executable_vaddr(strings[0]));
  EXPECT_FALSE(pie->cstring_at_vaddr(0xffffffff0000ull));

  auto shared = load(kElfData + "fake_gc_shared.so");
  ASSERT_TRUE(shared);
  EXPECT_FALSE(shared->soname());  // linked without -soname
  auto lib = load(kDebianLibpython);
  ASSERT_TRUE(lib);
  EXPECT_EQ(lib->soname(), "libpython3.11.so.1.0");
}
