// Small pieces several families share: how a worker is named in messages, and how a failed attach is reported.
#pragma once

#include <string>

#include "core/proc/discovery.h"

namespace sp::agent {

// "worker synchrotron1 (pid 42)".
std::string who(const WorkerInfo& w);

// A failed attach of `family` to worker `w` (`what`: "attach to", "per-transaction attribution for"): a warning when
// the process still runs; a debug line when it has exited meanwhile, which is no failure (the agent says so once for
// all families).
void log_attach_failure(const char* family, const std::string& proc_root, const WorkerInfo& w, const std::string& what,
                        const std::string& error);

}  // namespace sp::agent
