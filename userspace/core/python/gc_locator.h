// Decides how to observe CPython's garbage collector in one ELF file (a python executable or a libpython shared
// object), before anything is attached. Three methods, tried in this order:
//
//   usdt       the file carries SDT notes python:gc__start / python:gc__done (CPython built --with-dtrace, as
//              Debian, Ubuntu and Fedora do). libbpf attaches them itself; the plan only says they are there.
//   symbol     an unstripped build: the collection function is in .symtab (`collect` in 3.8-3.9,
//              `gc_collect_main` in 3.10-3.13 and 3.14.5+, `_PyGC_Collect` in 3.14.0-3.14.4). Uprobe at entry,
//              uretprobe for the count. Sees automatic collections too.
//   methoddef  stripped builds (the official python:3.x-slim images are linked --strip-all): the gc module's
//              PyMethodDef table in the data gives the address of gc.collect()'s C function (the Argument Clinic
//              wrapper). Uprobe/uretprobe there bracket every gc.collect() call, which is how Synapse collects
//              (it disables automatic GC). Automatic collections are not seen.
//
// Everything here reads the file only (through sp::ElfFile, bounds-checked): hostile input yields "no plan", never a
// crash. The per-version facts (function names, argument positions, PyLong layouts) and where they were checked are
// listed in gc_locator.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/python/elf_file.h"

namespace sp {

enum class GcMethod { Usdt, Symbol, MethodDef };

// "usdt" | "symbol" | "methoddef" (also the spelling a --gc-method option accepts).
std::string_view gc_method_name(GcMethod method);
std::optional<GcMethod> parse_gc_method(std::string_view name);

// CPython version of a binary. major == 0 means unknown; micro == -1 means unknown micro.
struct PythonVersion {
  int major = 0;
  int minor = 0;
  int micro = -1;
  bool free_threaded = false;  // "t" ABI (3.13t+): different object header, PyLong offsets below do not apply
  bool debug = false;          // "d" ABI (python3.11d): Py_DEBUG build
  std::string source;          // where the answer came from: "soname", "file name", "rodata"

  bool known() const { return major != 0; }
  bool at_least(int maj, int min) const { return major > maj || (major == maj && minor >= min); }
  std::string to_string() const;  // "3.11.2", "3.13t", "unknown"
};

// "python3.11", "libpython3.11.so.1.0", "/usr/local/lib/libpython3.13t.so", "python3.11d" -> major.minor (+ABI flags).
// Only the last path component is looked at; nullopt when it does not name a CPython version.
std::optional<PythonVersion> python_version_from_name(std::string_view file_name);

// Version of an ELF file: DT_SONAME first, then the file name, then PY_VERSION ("3.11.2") in read-only data, which
// also supplies the micro version when the name gave major.minor.
PythonVersion detect_python_version(const ElfFile& elf, std::string_view file_name);

// How PyLong objects are laid out in memory, for reading gc.collect()'s generation argument and result in BPF.
// Both layouts hold the 30-bit digits (uint32 each) at digit_offset; the GIL build's object header is 16 bytes.
enum class PyLongLayoutKind : std::uint32_t {
  SizeSigned = 0,  // <= 3.11: ob_size (Py_ssize_t at 16): sign = sign of ob_size, ndigits = |ob_size|
  LvTag = 1,       // >= 3.12: lv_tag (uintptr_t at 16): low 2 bits 0 = positive, 1 = zero, 2 = negative;
                   //          ndigits = lv_tag >> 3
};

struct PyLongLayout {
  PyLongLayoutKind kind = PyLongLayoutKind::SizeSigned;
  std::uint32_t size_offset = 16;   // ob_size or lv_tag
  std::uint32_t digit_offset = 24;  // ob_digit[0]
  std::uint32_t digit_bits = 30;    // PYLONG_BITS_IN_DIGIT default on 64-bit (15 only if configured so)
};

// The layout for a version, nullopt when unknown (unknown version, free-threaded build, before 3.8).
std::optional<PyLongLayout> pylong_layout_for(const PythonVersion& version);

// Where the generation comes from when a collection starts. Numeric values match enum sp_gc_gen_source in bpf/gc.h.
enum class GcGenerationSource : std::uint32_t {
  UsdtArg = 0,   // python:gc__start(int generation)
  IntArg = 1,    // C function whose 2nd argument (PT_REGS_PARM2) is `int generation`. 3.13+: may be -1
                 // (GENERATION_AUTO, the collector picks the generation itself): report as unknown
  Fastcall = 2,  // gc.collect()'s wrapper (module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames):
                 // generation = PyLong args[0] when nargs >= 1 or kwnames != NULL (the only keyword gc.collect
                 // accepts is generation=, and vectorcall puts keyword values after the positional ones),
                 // 2 when neither
  None = 3,
};

// Where the collected count comes from at the end. Numeric values match enum sp_gc_ret_source in bpf/gc.h.
enum class GcCountSource : std::uint32_t {
  UsdtArg = 0,       // python:gc__done(long collected)
  ReturnInt = 1,     // the function returns Py_ssize_t (collected + uncollectable)
  ReturnPyLong = 2,  // the function returns a PyLong (collected + uncollectable), NULL on error
  None = 3,
};

struct GcProbePlan {
  GcMethod method = GcMethod::Usdt;
  PythonVersion version;

  // Usdt: the notes of provider "python" named gc__start and gc__done (pc and semaphore are link-time addresses).
  std::vector<UsdtNote> usdt_notes;

  // Symbol and MethodDef: the function to put the uprobe (entry) and uretprobe (return) on.
  std::uint64_t func_vaddr = 0;   // link-time address
  std::uint64_t func_offset = 0;  // file offset, what a uprobe on this file takes
  std::string symbol;             // the .symtab name, or "gc.collect" for MethodDef

  GcGenerationSource generation = GcGenerationSource::None;
  GcCountSource collected = GcCountSource::None;
  bool generation_readable = false;
  bool collected_readable = false;
  std::optional<PyLongLayout> long_layout;  // set for MethodDef when the version is known
  // False for MethodDef: only collections made through gc.collect() are seen, not threshold-triggered ones.
  bool sees_automatic_collections = true;

  std::string detail;  // one human-readable line for logs and `doctor`
};

// Plans GC probing for one file. `file_name` is the path the file was found under (used for the version when the
// file has no DT_SONAME). Without `force`, the first method that works in the order usdt, symbol, methoddef wins;
// with it, only that method is tried. On failure returns nullopt and `why_not` says, per method tried, why not.
std::optional<GcProbePlan> plan_gc_probe(const ElfFile& elf, std::string_view file_name, std::string& why_not,
                                         std::optional<GcMethod> force = std::nullopt);

}  // namespace sp
