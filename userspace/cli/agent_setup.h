// What `run` and `record` do alike before the profiling loop starts: signals, capabilities, the checks that make
// "nothing can load" one clear line, and the loop itself with the registered families.
#pragma once

#include <signal.h>

#include <memory>

#include "agent/profiling_loop.h"
#include "cli/options.h"
#include "exporter/server.h"

namespace sp::cli {

// Blocks SIGINT and SIGTERM before any thread starts, so that every thread inherits the mask and only the main
// thread's sigwait()/sigtimedwait() receives them. Returns the set.
sigset_t block_stop_signals();

// Before any thread starts (capabilities are per thread; threads inherit them): keeps only what loading, attaching
// and every later rescan need, drops the rest for good.
void drop_capabilities(const CliOptions& o);

// The loop with every registered family started; nullptr (after one clear error line) when nothing can load.
std::unique_ptr<agent::ProfilingLoop> start_profiling(const CliOptions& o, bool keep_fingerprints);

// `run` between binding its port and waiting for a signal: /metrics gets the exposition (during the first scan it
// serves what there is: the agent's own series, the families' status), the first scan attaches to what runs now,
// /readyz turns 200, the loop's thread starts. /healthz has answered since the server was bound and goes on
// answering throughout: a long first scan on a big node must not fail a liveness probe.
void serve_and_start(exporter::MetricsServer& server, agent::ProfilingLoop& loop, const CliOptions& options);

}  // namespace sp::cli
