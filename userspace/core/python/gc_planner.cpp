#include "core/python/gc_planner.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>

#include <cerrno>

#include "core/python/elf_file.h"
#include "core/util/safe_file.h"

namespace sp {

std::string GcPlanner::attach_path(const WorkerInfo& w) const {
  return fmt::format("{}/{}/root{}", proc_root_, w.host_pid, w.python_path);
}

std::optional<GcProbePlan> GcPlanner::plan(const WorkerInfo& w, std::string& error) {
  if (w.python_path.empty()) {
    error = "no Python executable or libpython found in its memory maps";
    return std::nullopt;
  }
  int err = 0;
  Fd root = open_file(fmt::format("{}/{}/root", proc_root_, w.host_pid), O_PATH | O_DIRECTORY, err);
  if (!root.valid()) {
    error = fmt::format("open {}/{}/root: {}", proc_root_, w.host_pid, errno_text(err));
    return std::nullopt;
  }
  Fd bin = open_in_root(root.get(), w.python_path, err);
  if (!bin.valid()) {
    error = fmt::format("open {} inside the process's root: {}", w.python_path, errno_text(err));
    return std::nullopt;
  }
  struct stat st {};
  if (fstat(bin.get(), &st) != 0) {
    error = fmt::format("stat {}: {}", w.python_path, errno_text(errno));
    return std::nullopt;
  }
  FileId id{st.st_dev, st.st_ino, st.st_size, static_cast<long>(st.st_mtim.tv_sec)};
  auto it = cache_.find(id);
  if (it == cache_.end()) {
    Entry e;
    std::string why;
    auto elf = ElfFile::from_fd(bin.get(), why);
    if (elf) e.plan = plan_gc_probe(*elf, w.python_path, why, force_);
    if (!e.plan) e.error = fmt::format("{}: {}", w.python_path, why);
    it = cache_.emplace(id, std::move(e)).first;
  }
  error = it->second.error;
  return it->second.plan;
}

}  // namespace sp
