// Running aggregates of a recording: what the summary and the report need, kept in memory of a size that does not
// grow with the recording's length (a 10-minute recording holds about what a 10-second one does). Internal to
// core/record: summary.cpp feeds them event by event.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/correlate/correlator.h"  // IntervalUnion

namespace sp {

struct Distribution;

// Count, total, extremes and percentiles of durations (seconds). The first kExact values are kept as they are, so
// small samples give exact nearest-rank percentiles; beyond that a log-bucketed histogram (buckets 2^(1/32) wide:
// a percentile is within about 1.1 % of the nearest-rank value, and never outside [min, max]) replaces them.
class DurationStats {
 public:
  void add(double seconds);
  std::size_t count() const { return count_; }
  double total() const { return total_; }
  double max() const { return max_; }
  // The nearest-rank value at `p` in (0, 1].
  double percentile(double p) const;
  Distribution distribution() const;
  // (representative value in seconds, count) of the non-empty buckets, ascending: for distribution charts.
  std::vector<std::pair<double, std::uint64_t>> buckets() const;

 private:
  static constexpr std::size_t kExact = 32;
  static int bucket_of(double seconds);
  static double value_of(int bucket);  // the bucket's geometric middle
  void bump(int bucket);
  void spill();

  std::size_t count_ = 0;
  double total_ = 0, min_ = 0, max_ = 0;
  std::vector<double> exact_;         // while count_ <= kExact
  int lo_ = 0;                        // bucket index of counts_[0]
  std::vector<std::uint64_t> counts_; // from lo_ up to the highest bucket seen
};

// How the span's time divides among causes that may overlap (GC, PostgreSQL executing, a database call in flight,
// disk), per worker. For each cause: its union over the span, and the time in which it is the first active cause in
// the given order (so the exclusive parts add up to at most the span, and a new cause slots in by its priority).
// Intervals may arrive in any order within `lag_ns` of the newest end seen; what lies further back is settled into
// totals and forgotten, so memory holds only that window (a start older than it is clipped to it).
class CauseTimeline {
 public:
  CauseTimeline(std::size_t causes, std::uint64_t from_ns, std::uint64_t lag_ns = 5'000'000'000ULL);
  void add(std::size_t cause, std::uint64_t start_ns, std::uint64_t end_ns);
  struct Totals {
    std::vector<std::uint64_t> union_ns, exclusive_ns;
  };
  // Over [from, to).
  Totals totals(std::uint64_t to_ns) const;
  std::size_t held_intervals() const;  // not yet settled, over all causes

 private:
  void sweep(std::uint64_t from, std::uint64_t to, Totals& into) const;
  std::vector<IntervalUnion> unions_;
  Totals settled_;
  std::uint64_t watermark_;
  std::uint64_t lag_ns_;
  std::uint64_t newest_end_ = 0;
};

// The N longest moments seen (by duration), for the report's "slowest moments".
struct SlowMoment {
  std::string cause;  // gc, db_client, db_server, db_lock, disk
  std::string what;   // "GC gen 2", "persist_events: SELECT users", ...
  std::uint64_t start_ns = 0, end_ns = 0;
  std::uint32_t thread = 0;
  double at_s = 0, duration_s = 0;  // from the recording's start (the trace's time); set by the summary
};
class SlowestMoments {
 public:
  explicit SlowestMoments(std::size_t n = 10) : n_(n) {}
  // `make` builds the moment only when it is among the N longest so far (no string work for the rest).
  template <typename Make>
  void offer(std::uint64_t duration_ns, Make make) {
    if (heap_.size() >= n_ && duration_ns <= heap_.front().first) return;
    push(duration_ns, make());
  }
  std::vector<SlowMoment> longest_first() const;

 private:
  void push(std::uint64_t duration_ns, SlowMoment m);
  std::size_t n_;
  std::vector<std::pair<std::uint64_t, SlowMoment>> heap_;  // min-heap by duration
};

}  // namespace sp
