// Per-worker correlation of what the probes measured with what the worker says about itself (its scraped Synapse
// metrics). Three derived views, all per worker:
//
//   python overhead   Synapse's synapse_storage_query_time_sum increase minus the libpq time the probes measured over
//                     the same interval (COMMIT/ROLLBACK excluded: Synapse does not time them). What is left is time
//                     inside Synapse's timed region but outside libpq: GIL re-acquisition, GC pauses, psycopg2 and
//                     Python work. A counter (seconds).
//   GC coverage       GC seconds the probes measured over Synapse's python_gc_time_sum increase, over the last window
//                     of scrapes. Above 1: collections Synapse did not time itself; below 1: the probes missed some.
//   time share        over the last window, the share of wall time during which the worker was in a GC pause, had a
//                     libpq call in flight, had a statement executing in a PostgreSQL backend for it, or had a block
//                     request (its own or a backend's) in the queue or on the device. Each is the UNION of the
//                     intervals, so concurrent queries or requests count once and every share lies in [0, 1].
//
// Clocks. Probe events carry CLOCK_MONOTONIC times; a scrape is stamped with CLOCK_MONOTONIC at its start (what
// std::chrono::steady_clock reads on Linux). Events reach us when the agent drains its ring buffers (every 250 ms),
// after the scrape has started, so "probe time up to the scrape" is the running total minus what ended after the
// scrape's time: the events of the last `history_ns` are kept for that. Each interval's boundaries are therefore
// exact (an event counts on the side of the scrape where it ended, as Synapse's own observation does).
//
// Everything here is fed by one thread (the agent's scanning thread) and read by the exporter through snapshot():
// the class is not thread-safe; the caller serialises.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/model/process_book.h"  // WorkerLabels
#include "core/scrape/prom_text.h"

namespace sp {

// A set of disjoint [start, end) intervals kept sorted, merged on insert. Memory is bounded: past `max_intervals`
// the smallest gaps are bridged (gaps below a threshold that doubles each time are closed), which can only overstate
// the covered time, by at most the bridged gaps; bridged_ns() says how much.
class IntervalUnion {
 public:
  explicit IntervalUnion(std::size_t max_intervals = 16'384) : max_(max_intervals < 2 ? 2 : max_intervals) {}
  void add(std::uint64_t start, std::uint64_t end);
  void forget_before(std::uint64_t t);  // drops what ends at or before t
  std::uint64_t covered(std::uint64_t from, std::uint64_t to) const;  // length of the union inside [from, to)
  std::size_t size() const { return v_.size(); }
  const std::vector<std::pair<std::uint64_t, std::uint64_t>>& intervals() const { return v_; }  // sorted, disjoint
  std::uint64_t bridged_ns() const { return bridged_ns_; }

 private:
  void coarsen();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> v_;
  std::size_t max_;
  std::uint64_t min_gap_ = 0;  // gaps shorter than this are closed on insert
  std::uint64_t bridged_ns_ = 0;
};

// The few Synapse counters the correlator reads from one scrape. Absent when the worker does not export them (the
// derived series that need them are then not exported for that worker).
struct SynapseCounters {
  std::optional<double> query_time_sum;  // synapse_storage_query_time_sum, all label sets (seconds)
  std::optional<double> gc_time_sum;     // python_gc_time_sum, all generations (seconds)
};
SynapseCounters synapse_counters(const std::vector<prom::Family>& families);

enum class Cause : std::size_t { Gc = 0, DbClient = 1, DbServer = 2, Disk = 3 };
inline constexpr std::size_t kCauses = 4;
const char* cause_name(Cause c);  // the `cause` label: gc, db_client, db_server, disk

struct CorrelationOptions {
  std::uint64_t window_ns = 60'000'000'000ULL;  // time share and GC coverage look this far back
  std::size_t max_intervals = 16'384;           // per worker and cause
  // How old a scrape's start may be when its result is added (the scrape timeout plus a drain, with room); events
  // are kept this long. An older scrape is compared with the probes as of `history_ns` ago.
  std::uint64_t history_ns = 10'000'000'000ULL;
};

struct WorkerCorrelation {
  std::optional<double> python_overhead_seconds;  // counter, from the first scrape with query_time_sum
  std::optional<double> gc_coverage_ratio;        // may be +Inf (probe GC time while Synapse timed none)
  std::optional<std::array<double, kCauses>> time_share;  // once the worker has been watched for a second
  double window_seconds = 0;                      // the span time_share covers (shorter than the window at first)
};

class Correlator {
 public:
  explicit Correlator(CorrelationOptions options = {}) : options_(options) {}

  // Probe events (CLOCK_MONOTONIC ns). `in_query_time`: the libpq call is one Synapse times (not COMMIT/ROLLBACK).
  void add_gc(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns);
  void add_query(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns, bool in_query_time);
  void add_server(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns);
  void add_disk(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns);

  // The worker is being watched from `now_ns` on (time_share covers idle workers too, from when they were found).
  void watch(const WorkerLabels& w, std::uint64_t now_ns);

  // After each drain of the probes: every event that ended by `now_ns` has been added. Records the cumulative
  // totals for the scrapes to come and forgets what left the window.
  void tick(std::uint64_t now_ns);

  // A successful scrape of the worker, started at `at_ns`. Call after the tick() that followed `at_ns` (results
  // arriving earlier are kept until then).
  void add_scrape(const WorkerLabels& w, std::uint64_t at_ns, const SynapseCounters& c);

  // The worker has gone for good (no process with these labels remains).
  void forget(const WorkerLabels& w) { workers_.erase(w); }

  std::map<WorkerLabels, WorkerCorrelation> snapshot() const;

 private:
  struct Totals {  // probe time feeding the scrape comparisons, in ns
    std::uint64_t query_ns = 0;  // libpq calls Synapse times
    std::uint64_t gc_ns = 0;
  };
  struct Recent {  // one event's contribution to Totals, kept for history_ns
    std::uint64_t end_ns = 0;
    Totals add;
  };
  struct ScrapePoint {
    std::uint64_t at_ns = 0;
    SynapseCounters counters;
    Totals probes;  // probe totals of what ended by at_ns
  };
  struct Worker {
    std::uint64_t first_seen_ns = 0;
    std::array<IntervalUnion, kCauses> busy;
    Totals running;               // everything so far
    std::deque<Recent> recent;    // in arrival order (about end order)
    std::deque<ScrapePoint> pending;  // scrapes whose time no tick has passed yet
    std::deque<ScrapePoint> scrapes;  // settled, newest last, within the window (at least the newest two)
    std::optional<double> overhead_raw;  // sum of per-interval (synapse - probe) seconds
    double overhead_exported = 0;        // max of overhead_raw so far: a counter never goes down
  };

  Worker& worker(const WorkerLabels& w, std::uint64_t seen_ns);
  void add_busy(const WorkerLabels& w, Cause c, std::uint64_t start_ns, std::uint64_t end_ns);
  void settle(Worker& w, ScrapePoint p);
  static Totals totals_at(const Worker& w, std::uint64_t at_ns);
  void account(const WorkerLabels& w, std::uint64_t end_ns, Totals add);

  CorrelationOptions options_;
  std::uint64_t now_ns_ = 0;
  std::map<WorkerLabels, Worker> workers_;
};

}  // namespace sp
