// What a recording shows at a glance (summary.txt of `synapse-profiler record`, and the numbers report.html draws):
// per worker and per disk the distributions and shares of time, the most expensive statements and transactions, and
// the findings as plain sentences, most important first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/record/recording.h"

namespace sp {

// The numbers the report and summary show.
struct Distribution {
  std::size_t count = 0;
  double total_s = 0;
  double mean_s = 0;
  double p50_s = 0;
  double p99_s = 0;
  double max_s = 0;
};
Distribution distribution_of(std::vector<double> seconds);

struct FingerprintStats {
  std::string fingerprint;  // normalised text, no literals
  std::string verb, table;
  Distribution time;
};

struct WorkerSummary {
  WorkerLabels worker;
  Distribution gc;
  std::map<int, std::size_t> gc_per_generation;
  std::vector<double> gc_pauses_s;  // for the distribution chart
  Distribution client;
  Distribution server;
  Distribution lock_waits;
  double io_bytes = 0;
  std::size_t io_requests = 0;
  double gc_share = 0;            // union of pauses / span
  double client_share = 0;        // union of libpq calls / span
  double server_share = 0;
  double disk_share = 0;
  double query_gc_overlap_s = 0;  // client query time overlapped by a GC pause of the same process
  std::vector<FingerprintStats> top_fingerprints;  // by total time, at most 10
  // Client query time per Synapse transaction (desc; "unattributed" without one), by total time, at most 10.
  std::vector<FingerprintStats> top_transactions;
};

struct DeviceSummary {
  std::string device;
  std::size_t requests = 0;
  double bytes = 0;
  Distribution queue;
  Distribution device_time;
  std::vector<double> device_times_s;  // for the distribution chart
  std::map<std::string, std::size_t> per_worker;  // requests charged to each worker (with via)
};

struct RecordingSummary {
  double span_s = 0;
  std::string wall_start;  // ISO 8601, UTC
  std::size_t events = 0;
  std::uint64_t dropped = 0;
  std::size_t max_events = 0;
  std::vector<WorkerSummary> workers;
  std::vector<DeviceSummary> devices;
  std::vector<std::string> findings;  // plain sentences, most important first
};
RecordingSummary summarize(const Recording& r);

std::string render_summary_text(const RecordingSummary& s);

}  // namespace sp
