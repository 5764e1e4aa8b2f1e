// Names the frames of a Python stack recorded in the kernel (bpf/pystack.h: per frame a code object address and the
// byte offset of the current instruction) by reading the worker's memory: the code object's qualified name
// (co_qualname, 3.11+; co_name in 3.10, which has no qualified name), file name, first line, and the line of the
// instruction from the code object's line table (3.10: (address delta, line delta) byte pairs; 3.11+: the location
// table). Nothing else of the process is read: no locals, no arguments.
//
// Results are cached per (pid, code object address). A code object can be freed and its memory reused by another
// one (a module reloaded, a lambda or a class body compiled at run time), so every lookup first re-reads the code
// object's header (one read of ~150 bytes) and compares its identity: type pointer, the name, qualified name, file
// name and line table pointers and co_firstlineno. Code objects are immutable, so an object whose identity fields are
// all unchanged names the same function; anything else (a different object, or not a code object at all any more)
// is read again. This is cheaper than the whole read (strings, line table) and needs no generation counter from the
// interpreter, which CPython does not keep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/python/py_offsets.h"

namespace sp {

// Another process's memory. Tests hand the symbolizer a fake one.
class ProcessMemory {
 public:
  virtual ~ProcessMemory() = default;
  // Reads exactly `len` bytes at `addr` of process `pid`; false (errno-free) when any of them cannot be read.
  virtual bool read(int pid, std::uint64_t addr, void* out, std::size_t len) = 0;
};

// process_vm_readv(2): needs the same rights as ptrace-attaching to the target (CAP_SYS_PTRACE for another user's).
class LiveProcessMemory final : public ProcessMemory {
 public:
  bool read(int pid, std::uint64_t addr, void* out, std::size_t len) override;
};

// What the symbolizer needs to know of one process's CPython.
struct PyCodeLayout {
  int minor = 0;                // 10..13
  PyFrameOffsets offsets;
  std::uint64_t code_type = 0;  // PyCode_Type in the process: a code object's ob_type must be this
};

struct PyFrameSymbol {
  std::string function;  // qualified name (3.11+) or name (3.10)
  std::string file;      // co_filename
  int first_line = 0;    // co_firstlineno
  int line = 0;          // line of the instruction; 0 when unknown (no instruction yet, or no line for it)
  bool operator==(const PyFrameSymbol&) const = default;
};

// Line tables. `byte_offset` is the instruction's offset in the bytecode (code units * 2). 0 when the table has no
// line for it (or the table is malformed: decoding stops at its end, never reads past it).
int py310_line_for_offset(std::span<const std::uint8_t> table, int first_line, int byte_offset);
int py311_line_for_offset(std::span<const std::uint8_t> table, int first_line, int byte_offset);

class PySymbolizer {
 public:
  explicit PySymbolizer(ProcessMemory& memory, std::size_t max_entries = 1u << 16)
      : memory_(memory), max_entries_(max_entries) {}

  void set_process(int pid, const PyCodeLayout& layout);
  // Drops the process's layout and cached code objects (it exited, or its PID will be reused).
  void forget_process(int pid);

  // The frame's symbol; nullopt with `error` when the process is unknown, the memory unreadable, or the address is
  // not (any more) a code object.
  std::optional<PyFrameSymbol> symbolize(int pid, std::uint64_t code, std::int32_t instr_offset, std::string& error);

  struct Stats {
    std::uint64_t hits = 0;    // identity unchanged: names from the cache
    std::uint64_t misses = 0;  // first sight of (pid, code)
    std::uint64_t reused = 0;  // cached, but the identity changed: read again
  };
  const Stats& stats() const { return stats_; }
  std::size_t cached() const { return cache_.size(); }

 private:
  struct Identity {
    std::uint64_t type = 0, name = 0, qualname = 0, filename = 0, linetable = 0;
    std::int32_t first_line = 0;
    bool operator==(const Identity&) const = default;
  };
  struct Entry {
    Identity id;
    std::string function, file;
    std::vector<std::uint8_t> linetable;
  };
  bool read_identity(int pid, const PyCodeLayout& l, std::uint64_t code, Identity& id, std::string& error);
  bool fill(int pid, const PyCodeLayout& l, Entry& e, std::string& error);
  std::optional<std::string> read_str(int pid, const PyCodeLayout& l, std::uint64_t str);

  ProcessMemory& memory_;
  std::size_t max_entries_;
  std::map<int, PyCodeLayout> procs_;
  std::map<std::pair<int, std::uint64_t>, Entry> cache_;
  Stats stats_;
};

}  // namespace sp
