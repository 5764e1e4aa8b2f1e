// Where a Synapse worker's Python keeps what the libpq probe needs to name the transaction a query belongs to: the
// thread states, their frames, code objects and str objects. The probe walks them in the kernel at PQexec entry (see
// bpf/libpq.bpf.c); everything here decides, from the interpreter's ELF file alone, whether that walk is possible and
// with which byte offsets.
//
// Offsets come from a table per CPython minor version (3.10-3.13), chosen by the version the file itself states
// (DT_SONAME / file name, and PY_VERSION in its read-only data: see detect_python_version). For 3.13 the file also
// carries _Py_DebugOffsets at the start of _PyRuntime (section .PyRuntime, kept by --strip-all): when present and
// well-formed it is used for every offset it covers, the table supplying the rest (the TSS key, str state bits).
// Anything else (older or newer versions, free-threaded or debug builds) gets no offsets and a reason, and the
// feature stays off for that worker while the rest of the libpq probe keeps working.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/python/elf_file.h"
#include "core/python/gc_locator.h"  // PythonVersion

namespace sp {

// Byte offsets inside CPython's objects (64-bit, GIL build). Field comments name the C member.
struct PyFrameOffsets {
  // _PyRuntimeState
  std::uint32_t tss_key = 0;       // autoTSSkey._key (gilstate.autoTSSkey before 3.12): the pthread key of the
                                   // thread's PyThreadState, valid also while the thread has released the GIL
  std::uint32_t interp_head = 0;   // interpreters.head
  // PyInterpreterState
  std::uint32_t threads_head = 0;  // threads.head (tstate_head in 3.10)
  // PyThreadState
  std::uint32_t ts_next = 0;       // next
  std::uint32_t ts_thread_id = 0;  // thread_id: pthread_self() of the thread, i.e. its TCB address (== fsbase on
                                   // x86-64 glibc and musl), which is the same in every PID namespace
  std::uint32_t ts_frame = 0;      // 3.10 frame, 3.11-3.12 cframe, 3.13 current_frame
  std::optional<std::uint32_t> cframe_current;  // 3.11-3.12: _PyCFrame.current_frame; none when ts_frame is the frame
  // Frames: PyFrameObject (3.10), _PyInterpreterFrame (3.11+)
  std::uint32_t f_code = 0;        // f_code (f_executable in 3.13)
  std::uint32_t f_back = 0;        // f_back (3.10), previous (3.11+)
  std::uint32_t f_locals = 0;      // f_localsplus (3.10), localsplus (3.11+): array of PyObject *
  // PyCodeObject
  std::uint32_t co_name = 0;
  std::uint32_t co_varnames = 0;   // co_varnames (3.10), co_localsplusnames (3.11+): tuple of str, same order as
                                   // the frame's locals array
  // Objects
  std::uint32_t ob_type = 0;
  std::uint32_t tuple_size = 0;    // ob_size
  std::uint32_t tuple_items = 0;   // ob_item
  std::uint32_t str_length = 0;    // PyASCIIObject.length
  std::uint32_t str_state = 0;     // PyASCIIObject.state (32-bit bit field)
  std::uint32_t str_data = 0;      // sizeof(PyASCIIObject): where a compact ASCII str's bytes start
  std::uint32_t state_compact = 0; // mask of `compact` in state
  std::uint32_t state_ascii = 0;   // mask of `ascii` in state

  // Stacks (bpf/pystack.h walks the frames, core/python/py_symbolizer.h names them).
  std::uint32_t f_instr = 0;        // f_lasti (3.10: int, in code units), prev_instr (3.11-3.12), instr_ptr (3.13)
  bool instr_is_pointer = false;    // f_instr holds a _Py_CODEUNIT * into the code object (3.11+)
  std::optional<std::uint32_t> f_owner;  // _PyInterpreterFrame.owner (char), 3.12+: entry frames owned by the C
                                         // stack (FRAME_OWNED_BY_CSTACK) are shims, not Python functions
  std::uint32_t owner_cstack = 3;   // FRAME_OWNED_BY_CSTACK
  std::uint32_t co_code_adaptive = 0;  // 3.11+: where the bytecode starts inside the code object
  std::optional<std::uint32_t> co_qualname;  // 3.11+
  std::uint32_t co_filename = 0;
  std::uint32_t co_firstlineno = 0;  // int
  std::uint32_t co_linetable = 0;    // bytes: 3.10 (start delta, line delta) pairs, 3.11+ location table
  std::uint32_t bytes_size = 16;     // PyBytesObject ob_size
  std::uint32_t bytes_data = 32;     // PyBytesObject ob_sval

  std::string source;  // "table 3.11", or "_Py_DebugOffsets 3.13.0 + table 3.13"
  bool operator==(const PyFrameOffsets&) const = default;
};

// The table entry for a version, or nullopt with `why_not` (unknown version, not 3.10-3.13, free-threaded or debug
// ABI: their object headers differ).
std::optional<PyFrameOffsets> py_offsets_for_version(const PythonVersion& version, std::string& why_not);

// The part of CPython 3.13's _Py_DebugOffsets (Include/internal/pycore_runtime.h) the walk uses.
struct PyDebugOffsets {
  std::uint64_t version = 0;  // PY_VERSION_HEX of the build, e.g. 0x030d00f0
  bool free_threaded = false;
  std::uint64_t interp_head = 0, threads_head = 0;
  std::uint64_t ts_next = 0, ts_thread_id = 0, ts_current_frame = 0;
  std::uint64_t f_previous = 0, f_executable = 0, f_localsplus = 0;
  std::uint64_t co_name = 0, co_localsplusnames = 0;
  std::uint64_t f_instr_ptr = 0, f_owner = 0;
  std::uint64_t co_filename = 0, co_qualname = 0, co_linetable = 0, co_firstlineno = 0, co_code_adaptive = 0;
  std::uint64_t ob_type = 0, tuple_items = 0, tuple_size = 0;
  std::uint64_t str_state = 0, str_length = 0, str_ascii_size = 0;
};

// Bytes of the 3.13 layout of _Py_DebugOffsets (73 uint64 words).
inline constexpr std::size_t kPyDebugOffsets313Size = 73 * 8;

// Parses _Py_DebugOffsets from the first bytes of _PyRuntime. nullopt with `error` when the cookie "xdebugpy" is
// missing, the bytes are too short, or the layout is not the 3.13 one (the struct grew in 3.14).
std::optional<PyDebugOffsets> parse_py_debug_offsets(std::span<const std::uint8_t> bytes, std::string& error);

// What the libpq probe needs to read `desc` in one interpreter file: offsets plus the link-time addresses of the
// objects it compares against. Add the file's load base (load_base()) to get a process's addresses.
struct DescAttributionPlan {
  PythonVersion version;
  PyFrameOffsets offsets;
  std::uint64_t runtime_vaddr = 0;   // _PyRuntime
  std::uint64_t str_type_vaddr = 0;  // PyUnicode_Type: `desc` must be exactly a str (not a subclass)
  std::uint64_t code_type_vaddr = 0; // PyCode_Type: a frame's code object must be one
  std::string detail;                // one line for logs, `workers` and `doctor`
};

// Plans desc attribution for the Python executable or libpython a worker maps (`file_name`: the path it was found
// under). nullopt with `why_not` when the version is unsupported or a needed symbol is missing.
std::optional<DescAttributionPlan> plan_desc_attribution(const ElfFile& python, std::string_view file_name,
                                                         std::string& why_not);

// One line of /proc/PID/maps as far as load addresses go.
struct MappedRange {
  std::uint64_t start = 0;
  std::uint64_t offset = 0;  // file offset mapped at `start`
  std::string path;
};
// "start-end perms offset dev inode path" lines -> ranges (malformed lines skipped).
std::vector<MappedRange> parse_mapped_ranges(std::string_view maps_text);

// Where `elf` (mapped from `path`) is loaded in a process: runtime address minus link-time address. 0 for ET_EXEC;
// nullopt when no mapping of `path` lines up with a PT_LOAD segment.
std::optional<std::uint64_t> load_base(const ElfFile& elf, const std::vector<MappedRange>& maps, std::string_view path);
// The same from the file's type and segments alone (kept by callers that do not keep the whole file).
std::optional<std::uint64_t> load_base(std::uint16_t elf_type, const std::vector<ElfSegment>& segments,
                                       const std::vector<MappedRange>& maps, std::string_view path);

// glibc's `struct pthread` keeps the first 32 thread-specific values inline (specific_1stblock, 16 bytes each: seq,
// data); a thread's value for key K is at TCB + offset + K * 16 + 8. The offset of that block for the glibc whose
// libc.so.6 this is, when it is a version checked here; nullopt otherwise (the probe then walks the thread list).
std::optional<std::uint32_t> glibc_specific_offset(const ElfFile& libc, std::string& detail);
// The glibc version a libc.so.6 defines (highest GLIBC_2.N version name), e.g. {2, 36}.
std::optional<std::pair<int, int>> glibc_version(const ElfFile& libc);

}  // namespace sp
