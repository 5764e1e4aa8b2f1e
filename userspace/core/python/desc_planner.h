// Decides, per live worker, whether its libpq queries can be attributed to Synapse transactions (`desc`) and with
// which addresses: opens the worker's Python (executable or libpython) inside its own root, plans from the file
// (py_offsets.h, cached per file identity), places the plan at the process's load base from /proc/PID/maps, picks
// the thread-state route from the libc it maps, and checks the result against the live process (its _PyRuntime must
// lead to an interpreter whose thread list holds thread states that point back at it). Used by the libpq family,
// `workers` and `doctor`, so all three say the same.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/proc/discovery.h"
#include "core/python/py_offsets.h"

namespace sp {

struct DescProcessPlan {
  PythonVersion version;
  PyFrameOffsets offsets;
  std::uint64_t runtime = 0;    // addresses in the process
  std::uint64_t str_type = 0;
  std::uint64_t code_type = 0;
  std::optional<std::uint32_t> tls_offset;  // glibc's inline thread-specific block, when checked for its glibc
  std::string detail;
};

class DescPlanner {
 public:
  explicit DescPlanner(std::string proc_root) : proc_root_(std::move(proc_root)) {}

  // nullopt with `why_not` when desc attribution cannot work for this worker.
  std::optional<DescProcessPlan> plan(const WorkerInfo& w, std::string& why_not);

 private:
  // Everything taken from a file is cached by its identity, so that N workers of one Python read its ELF once (the
  // executable is several MB: reading it per worker dominated the agent's start with many workers).
  using FileId = std::tuple<dev_t, ino_t, off_t, long>;
  struct Entry {
    std::optional<DescAttributionPlan> plan;
    std::string error;
    std::uint16_t elf_type = 0;  // for load_base()
    std::vector<ElfSegment> segments;
  };
  struct LibcEntry {
    std::optional<std::uint32_t> tls_offset;
    std::string detail;
  };
  std::string proc_root_;
  std::map<FileId, Entry> cache_;
  std::map<FileId, LibcEntry> libc_cache_;
};

}  // namespace sp
