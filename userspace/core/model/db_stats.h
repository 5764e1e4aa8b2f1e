// What the libpq (client-side) probe family hands the exporter and the correlators: per (worker, verb, table)
// latency histograms, and per-query events that carry a fingerprint id but never SQL text.
#pragma once

#include <cstdint>
#include <map>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "core/model/probe_status.h"
#include "core/model/latency_histogram.h"
#include "core/model/process_book.h"

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
  std::string desc;  // client side: the Synapse transaction (new_transaction's `desc`) it was sent from; "" for none
};

// Per (worker, desc): client-side libpq calls. desc "" = unattributed (no new_transaction frame, or attribution
// off for the worker), "unknown" = records the ring buffer lost.
struct DescTotals {
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;
  void add(const DescTotals& o) {
    count += o.count;
    sum_ns += o.sum_ns;
  }
};

// Whether one worker's queries are attributed to Synapse transactions, and why not.
struct DescAttributionStatus {
  WorkerLabels labels;
  int host_pid = 0;
  bool active = false;
  std::string detail;  // the plan (version, offsets' source, thread-state route) or the reason it is off
};

struct DbClientSnapshot {
  std::map<std::pair<WorkerLabels, QueryKey>, LatencyHistogram> series;
  std::vector<ProbeStatus> status;
  std::uint64_t events_lost = 0;
  std::map<std::pair<WorkerLabels, std::string>, DescTotals> desc;
  // Per (worker, result of the frame walk): found, no_frame, no_thread_state, bad_value, off.
  std::map<std::pair<WorkerLabels, std::string>, std::uint64_t> desc_walks;
  std::vector<DescAttributionStatus> desc_status;  // live, attached workers
};

// A desc read from a worker's memory, made safe for a label: bytes outside printable ASCII (0x21-0x7e) become '_',
// at most 63 bytes are kept. "" stays "" (unattributed).
std::string sanitize_desc(std::string_view raw);

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
  std::size_t backends_attached = 0;  // backends whose probes are in place
  std::vector<std::string> attach_errors;
  std::uint64_t events_lost = 0;
  std::size_t backends_mapped = 0;
  std::size_t backends_unmapped = 0;
  // Per worker: statements run before the backend serving them was attached (from the hub's client-side count).
  std::map<WorkerLabels, std::uint64_t> missed_statements;
};

inline const WorkerLabels kOtherWorker{"other", ""};

}  // namespace sp
