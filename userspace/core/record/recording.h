// A deep-dive recording (`synapse-profiler record`): every GC pause, client query, server-side execution, lock wait
// and disk request of the profiled workers over a bounded time, kept in memory up to an event cap, plus the workers'
// scraped Synapse counters. Only the model: what is made of it lives beside it, the Chrome trace in trace_json.h,
// the numbers and findings in summary.h, the HTML report in report_html.h. All pure: the agent's probe families feed it
// through their event sinks, tests feed it synthetic events.
//
// Security: queries are kept as their fingerprint (normalised text without literals), never as the SQL sent.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/correlate/correlator.h"  // SynapseCounters
#include "core/model/db_stats.h"
#include "core/model/events.h"
#include "core/model/io_stats.h"
#include "core/model/process_book.h"

namespace sp {

// A recording keeps the events as the families hand them on (core/model/events.h).
using RecordedGc = GcPause;
using RecordedLockWait = LockWait;
using RecordedScrape = SynapseScrape;

class Recording {
 public:
  // `max_events`: GC pauses, queries, lock waits and disk requests together; later ones are counted as dropped.
  explicit Recording(std::size_t max_events = 1'000'000) : max_events_(max_events) {}

  // The recording's time origin (CLOCK_MONOTONIC ns) and the wall-clock time of that moment.
  void start(std::uint64_t mono_ns, std::chrono::system_clock::time_point wall);
  void finish(std::uint64_t mono_ns) { end_ns_ = mono_ns; }

  // Each returns false when the event was dropped (cap reached, or outside the recording's span).
  bool add_gc(const RecordedGc& e);
  bool add_query(const QueryEvent& e);  // client (libpq) or server side, by e.server_side
  bool add_lock_wait(const RecordedLockWait& e);
  bool add_io(const IoEvent& e);
  void add_scrape(const RecordedScrape& s);

  std::uint64_t start_ns() const { return start_ns_; }
  std::uint64_t end_ns() const { return end_ns_; }
  std::chrono::system_clock::time_point wall_start() const { return wall_start_; }
  std::size_t max_events() const { return max_events_; }
  std::size_t events() const { return gcs_.size() + queries_.size() + locks_.size() + ios_.size(); }
  std::uint64_t dropped() const { return dropped_; }
  bool cap_reached() const { return dropped_ > 0; }

  const std::vector<RecordedGc>& gcs() const { return gcs_; }
  const std::vector<QueryEvent>& queries() const { return queries_; }
  const std::vector<RecordedLockWait>& lock_waits() const { return locks_; }
  const std::vector<IoEvent>& ios() const { return ios_; }
  const std::vector<RecordedScrape>& scrapes() const { return scrapes_; }

 private:
  bool in_span(std::uint64_t start_ns, std::uint64_t end_ns) const;
  // Appends `e` to `into` when it lies in the span and the cap allows; counts it as dropped when the cap does not.
  template <typename T>
  bool admit(std::vector<T>& into, const T& e, std::uint64_t start_ns, std::uint64_t end_ns) {
    if (!in_span(start_ns, end_ns)) return false;
    if (events() >= max_events_) {
      ++dropped_;
      return false;
    }
    into.push_back(e);
    return true;
  }

  std::size_t max_events_;
  std::uint64_t start_ns_ = 0;
  std::uint64_t end_ns_ = 0;
  std::chrono::system_clock::time_point wall_start_{};
  std::uint64_t dropped_ = 0;
  std::vector<RecordedGc> gcs_;
  std::vector<QueryEvent> queries_;
  std::vector<RecordedLockWait> locks_;
  std::vector<IoEvent> ios_;
  std::vector<RecordedScrape> scrapes_;
};

}  // namespace sp
