#include "agent/families/family_util.h"

#include <fmt/core.h>

#include "core/util/log.h"

namespace sp::agent {

std::string who(const WorkerInfo& w) { return fmt::format("worker {} (pid {})", w.worker_name, w.host_pid); }

void log_attach_failure(const char* family, const std::string& proc_root, const WorkerInfo& w, const std::string& what,
                        const std::string& error) {
  if (process_running(proc_root, w.key)) {
    log::warn("{}: cannot {} {}: {}", family, what, who(w), error);
  } else {
    log::debug("{}: cannot {} {}, which has exited: {}", family, what, who(w), error);
  }
}

}  // namespace sp::agent
