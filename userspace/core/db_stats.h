// What the libpq (client-side) probe family hands the exporter and the correlators: per (worker, verb, table)
// latency histograms, and per-query events that carry a fingerprint id but never SQL text.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/gc_stats.h"  // ProbeStatus
#include "core/latency_histogram.h"
#include "core/process_book.h"

namespace sp {

struct QueryKey {
  std::string verb;   // SELECT, INSERT, UPDATE, DELETE, BEGIN, COMMIT, ROLLBACK, other; "unknown" for lost records
  std::string table;  // first table named ("" for none); "unknown" for lost records
  auto operator<=>(const QueryKey&) const = default;
};

// One query, as the worker saw it (libpq round trip) or as PostgreSQL executed it (server side). No SQL: only its
// fingerprint's id.
struct QueryEvent {
  WorkerLabels worker;     // the worker that sent it ("other" on the server side for non-Synapse clients)
  bool server_side = false;
  std::uint32_t tgid = 0;  // the worker's process (client side) or the backend's (server side)
  std::uint32_t tid = 0;
  std::uint64_t start_ns = 0;  // CLOCK_MONOTONIC
  std::uint64_t end_ns = 0;
  std::uint64_t conn = 0;
  std::uint64_t fingerprint_id = 0;
  std::string fingerprint;  // the normalised statement (no literals), for recordings
  std::string verb;
  std::string table;
};

struct DbClientSnapshot {
  std::map<std::pair<WorkerLabels, QueryKey>, LatencyHistogram> series;
  std::vector<ProbeStatus> status;
  std::uint64_t events_lost = 0;
};

}  // namespace sp

namespace sp {

// Per backend, counted in the kernel (exact): lock waits, transaction outcomes, and queries whose per-query record
// was lost.
struct BackendTotals {
  LatencyHistogram lost_queries;
  LatencyHistogram lock_waits;
  std::uint64_t commits = 0;
  std::uint64_t aborts = 0;
  void add(const BackendTotals& o) {
    lost_queries.add(o.lost_queries);
    lock_waits.add(o.lock_waits);
    commits += o.commits;
    aborts += o.aborts;
  }
};

// PostgreSQL's own view, attributed to the worker each backend serves (worker "other" for backends serving no
// discovered Synapse process).
struct DbServerSnapshot {
  std::map<std::pair<WorkerLabels, std::string>, LatencyHistogram> queries;  // key: labels, verb ("unknown": lost)
  std::map<WorkerLabels, BackendTotals> backends;
  std::size_t clusters_attached = 0;
  std::vector<std::string> attach_errors;
  std::uint64_t events_lost = 0;
  std::size_t backends_mapped = 0;
  std::size_t backends_unmapped = 0;
};

inline const WorkerLabels kOtherWorker{"other", ""};

}  // namespace sp
