// A deep-dive recording (`synapse-profiler record`): every GC pause, client query, server-side execution, lock wait
// and disk request of the profiled workers over a bounded time. Each event goes, as it arrives, into the trace
// stream (trace_json.h: written to disk, up to an event cap) and into the running aggregates behind the summary and
// the report (summary.h: kept in memory, of a size that does not grow with the recording's length). All pure: the
// agent's probe families feed it through their event sinks, tests feed it synthetic events.
//
// Security: queries are kept as their fingerprint (normalised text without literals), never as the SQL sent.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "core/correlate/correlator.h"  // SynapseCounters
#include "core/model/db_stats.h"
#include "core/model/events.h"
#include "core/model/io_stats.h"
#include "core/model/process_book.h"
#include "core/record/summary.h"

namespace sp {

class TraceStream;

// A recording keeps the events as the families hand them on (core/model/events.h).
using RecordedGc = GcPause;
using RecordedLockWait = LockWait;
using RecordedScrape = SynapseScrape;

// The default cap on events written to the trace: at about 20 bytes per event once compressed (docs/record.md),
// a trace of at most a few hundred MB, which Perfetto's UI still opens.
inline constexpr std::size_t kDefaultMaxEvents = 10'000'000;

class Recording {
 public:
  // `max_events`: GC pauses, queries, lock waits and disk requests written to the trace; later ones are counted as
  // dropped (not written), and still count in the summary.
  explicit Recording(std::size_t max_events = kDefaultMaxEvents) : max_events_(max_events) {}

  // Where admitted events are written (not owned; none: the summary only). Set before start().
  void set_trace(TraceStream* trace) { trace_ = trace; }

  // The recording's time origin (CLOCK_MONOTONIC ns) and the wall-clock time of that moment.
  void start(std::uint64_t mono_ns, std::chrono::system_clock::time_point wall);
  // Events that end later are not part of the recording (those that ended before and arrive later still are).
  void finish(std::uint64_t mono_ns) { end_ns_ = mono_ns; }

  // Each returns true when the event was written to the trace; false when it lies outside the recording's span
  // (ignored) or came after the cap (counted as dropped, and in the summary).
  bool add_gc(const RecordedGc& e);
  bool add_query(const QueryEvent& e);  // client (libpq) or server side, by e.server_side
  bool add_lock_wait(const RecordedLockWait& e);
  bool add_io(const IoEvent& e);
  void add_scrape(const RecordedScrape& s);

  std::uint64_t start_ns() const { return start_ns_; }
  std::uint64_t end_ns() const { return end_ns_; }
  std::chrono::system_clock::time_point wall_start() const { return wall_start_; }
  std::size_t max_events() const { return max_events_; }
  std::size_t events() const { return events_; }  // written to the trace
  std::uint64_t dropped() const { return dropped_; }
  bool cap_reached() const { return dropped_ > 0; }
  const SummaryBuilder& aggregates() const { return aggregates_; }

 private:
  bool in_span(std::uint64_t start_ns, std::uint64_t end_ns) const;
  // Whether an event in the span is written (under the cap); counts it either way.
  bool admit();

  std::size_t max_events_;
  TraceStream* trace_ = nullptr;
  std::uint64_t start_ns_ = 0;
  std::uint64_t end_ns_ = 0;
  std::chrono::system_clock::time_point wall_start_{};
  std::size_t events_ = 0;
  std::uint64_t dropped_ = 0;
  SummaryBuilder aggregates_;
};

}  // namespace sp
