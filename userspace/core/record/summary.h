// What a recording shows at a glance (summary.txt of `synapse-profiler record`, and the numbers report.html draws):
// per worker and per disk the distributions and shares of time, the most expensive statements and transactions, and
// the findings as plain sentences, most important first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/correlate/overlap.h"
#include "core/model/events.h"
#include "core/record/aggregates.h"

namespace sp {

class Recording;

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

// One segment of a worker's time bar: the time in which `cause` was the first active cause in kTimeCauses' order.
struct TimeShare {
  std::string cause;  // gc, db_server, db_client, disk, other
  std::string label;  // what the report's legend says
  double share = 0;   // of the span
};

struct WorkerSummary {
  WorkerLabels worker;
  Distribution gc;
  std::map<int, std::size_t> gc_per_generation;
  std::vector<std::pair<double, std::uint64_t>> gc_pause_buckets;  // (seconds, count), for the distribution chart
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
  // Where the wall time went, as disjoint segments that add up to the span (the last one, "other", is the rest).
  std::vector<TimeShare> time_bar;
  std::vector<SlowMoment> slowest;  // longest first, at most 10
};

struct DeviceSummary {
  std::string device;
  std::size_t requests = 0;
  double bytes = 0;
  Distribution queue;
  Distribution device_time;
  std::vector<std::pair<double, std::uint64_t>> device_time_buckets;  // (seconds, count), for the chart
  std::map<std::string, std::size_t> per_worker;  // requests charged to each worker (with via)
};

struct RecordingSummary {
  double span_s = 0;
  std::string wall_start;  // ISO 8601, UTC
  std::size_t events = 0;    // written to the trace
  std::uint64_t dropped = 0; // seen after the trace's cap, not written (the numbers here still count them)
  std::size_t max_events = 0;
  std::vector<WorkerSummary> workers;
  std::vector<DeviceSummary> devices;
  std::vector<std::string> findings;  // plain sentences, most important first
};

// The running aggregates behind a summary, fed event by event (by Recording). Memory grows with the number of
// workers, devices, statements and transactions, not with the number of events.
class SummaryBuilder {
 public:
  void start(std::uint64_t from_ns) { from_ns_ = from_ns; }
  void gc(const GcPause& g);
  void query(const QueryEvent& q);
  void lock_wait(const LockWait& l);
  void io(const IoEvent& e);
  // The summary of [from, to).
  RecordingSummary summarize(std::uint64_t to_ns) const;

 private:
  struct Statement {
    std::string verb, table;
    DurationStats time;
  };
  struct Worker {
    explicit Worker(std::uint64_t from_ns);
    DurationStats gc, client, server, locks;
    std::map<int, std::size_t> per_gen;
    CauseTimeline timeline;
    double io_bytes = 0;
    std::size_t io_requests = 0;
    std::uint64_t overlap_ns = 0;
    std::map<std::string, Statement> statements;  // by fingerprint
    std::map<std::string, DurationStats> transactions;  // by desc
    SlowestMoments slowest;
  };
  struct Device {
    std::size_t requests = 0;
    double bytes = 0;
    DurationStats queue, device;
    std::map<std::string, std::size_t> per_worker;
  };
  Worker& worker(const WorkerLabels& w);

  std::uint64_t from_ns_ = 0;
  std::map<WorkerLabels, Worker> workers_;
  std::map<std::string, Device> devices_;
  OverlapTracker overlap_;
  std::map<std::uint32_t, WorkerLabels> worker_of_tgid_;
};

// The recording's summary so far (over its span: start to finish).
RecordingSummary summarize(const Recording& r);

std::string render_summary_text(const RecordingSummary& s);

}  // namespace sp
