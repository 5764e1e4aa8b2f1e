// The probe families the agent runs, in order (a family may read an earlier one's decisions: block I/O after
// postgres). Adding a family: one line here (see docs/architecture.md).
#pragma once

#include "agent/profiling_loop.h"
#include "cli/options.h"

namespace sp::cli {

// `keep_fingerprints`: server-side statements carry their fingerprint (a recording keeps it); the agent's series
// need only the verb, which is far cheaper to read.
agent::Families make_probe_families(const CliOptions& o, bool keep_fingerprints);

}  // namespace sp::cli
