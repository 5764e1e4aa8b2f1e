// Plans GC probing for live processes: opens the Python binary a worker maps inside the worker's own root (openat2,
// never a host file), parses it and asks the locator. Plans are cached per file identity (device, inode, size,
// mtime), because every worker on a host usually shares one interpreter. Used by the GC family, `workers` and
// `doctor`, so all three report the same method.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "core/proc/discovery.h"
#include "core/python/gc_locator.h"

namespace sp {

class GcPlanner {
 public:
  explicit GcPlanner(std::string proc_root, std::optional<GcMethod> force = std::nullopt)
      : proc_root_(std::move(proc_root)), force_(force) {}

  // The plan for `w`'s interpreter, or nullopt with `error` saying why not (per method tried).
  std::optional<GcProbePlan> plan(const WorkerInfo& w, std::string& error);

  // The path a probe attaches through: <proc_root>/<pid>/root<path inside the process's root>.
  std::string attach_path(const WorkerInfo& w) const;
  const std::string& proc_root() const { return proc_root_; }

 private:
  using FileId = std::tuple<dev_t, ino_t, off_t, long>;
  struct Entry {
    std::optional<GcProbePlan> plan;
    std::string error;
  };
  std::string proc_root_;
  std::optional<GcMethod> force_;
  std::map<FileId, Entry> cache_;
};

}  // namespace sp
