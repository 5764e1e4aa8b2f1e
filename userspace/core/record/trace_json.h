// A recording as a Chrome trace (trace.json of `synapse-profiler record`) for Perfetto or chrome://tracing: one
// timeline on which a GC pause and the queries, lock waits and disk requests it coincided with can be seen together.
#pragma once

#include <ostream>

#include "core/record/recording.h"

namespace sp {

// Chrome trace event format (JSON object form): one process per worker (GC and per-thread query tracks, scraped
// counters), one per worker's PostgreSQL backends (server-side execution and lock waits), one per disk (requests on
// lanes, each with its device stage nested). Timestamps in microseconds from the recording's start.
void write_trace_json(const Recording& r, std::ostream& out);

}  // namespace sp
