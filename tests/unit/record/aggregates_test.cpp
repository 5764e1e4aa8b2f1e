// The recording's running aggregates: percentiles close to the nearest-rank ones at any sample size, the time bar's
// exclusive split, and memory that stays put however long the recording runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/record/aggregates.h"
#include "core/record/summary.h"

TEST(DurationStats, SmallSamplesAreExactAndLargeOnesWithinOnePercent) {
  sp::DurationStats small;
  std::vector<double> v;
  for (int i = 1; i <= 20; ++i) {
    small.add(i * 1e-3);
    v.push_back(i * 1e-3);
  }
  const auto d = small.distribution();
  const auto exact = sp::distribution_of(v);
  EXPECT_DOUBLE_EQ(d.p50_s, exact.p50_s);
  EXPECT_DOUBLE_EQ(d.p99_s, exact.p99_s);
  EXPECT_DOUBLE_EQ(d.max_s, 0.020);

  // 200 000 log-normal durations (a query-like spread from tens of us to tens of ms).
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(std::log(4e-4), 1.2);
  sp::DurationStats big;
  v.clear();
  for (int i = 0; i < 200'000; ++i) {
    const double x = dist(rng);
    big.add(x);
    v.push_back(x);
  }
  const auto b = big.distribution();
  const auto e = sp::distribution_of(v);
  EXPECT_EQ(b.count, e.count);
  EXPECT_NEAR(b.total_s, e.total_s, 1e-9 * e.total_s);
  EXPECT_DOUBLE_EQ(b.max_s, e.max_s);
  EXPECT_NEAR(b.p50_s, e.p50_s, 0.012 * e.p50_s);
  EXPECT_NEAR(b.p99_s, e.p99_s, 0.012 * e.p99_s);
  // The histogram's size depends on the spread of the values, not on their number.
  std::size_t counted = 0;
  for (const auto& [value, n] : big.buckets()) counted += n;
  EXPECT_EQ(counted, 200'000u);
  EXPECT_LT(big.buckets().size(), 1'000u);
}

TEST(CauseTimeline, EachMomentCountsOnceForTheFirstActiveCause) {
  constexpr std::uint64_t kMs = 1'000'000;
  sp::CauseTimeline t(3, 0);
  t.add(0, 100 * kMs, 200 * kMs);  // cause 0: [100, 200)
  t.add(1, 150 * kMs, 400 * kMs);  // cause 1: [150, 400), of which [150, 200) is cause 0's
  t.add(2, 0, 1000 * kMs);         // cause 2: everything, first only where 0 and 1 are not
  const auto totals = t.totals(1000 * kMs);
  EXPECT_EQ(totals.union_ns[0], 100 * kMs);
  EXPECT_EQ(totals.union_ns[1], 250 * kMs);
  EXPECT_EQ(totals.union_ns[2], 1000 * kMs);
  EXPECT_EQ(totals.exclusive_ns[0], 100 * kMs);
  EXPECT_EQ(totals.exclusive_ns[1], 200 * kMs);
  EXPECT_EQ(totals.exclusive_ns[2], 700 * kMs);
}

// Two minutes of two causes at 6 000 intervals per second, arriving a little out of order: the totals are the ones
// an exact union gives, and the settled window keeps the held intervals few.
TEST(CauseTimeline, LongRecordingsSettleIntoTotals) {
  constexpr std::uint64_t kUs = 1'000;
  constexpr std::uint64_t kEnd = 120'000'000 * kUs;  // 120 s: 24 lags
  sp::CauseTimeline t(2, 0);
  std::uint64_t expect0 = 0, expect1 = 0;
  // Cause 0: 100 us busy every 500 us; cause 1: 50 us at each 250 us mark (half inside cause 0's busy time).
  for (std::uint64_t at = 0; at < kEnd; at += 500 * kUs) {
    t.add(1, at + 250 * kUs, at + 300 * kUs);  // the later one first
    t.add(0, at, at + 100 * kUs);
    t.add(1, at + 50 * kUs, at + 100 * kUs);
    expect0 += 100 * kUs;
    expect1 += 100 * kUs;
  }
  const auto totals = t.totals(kEnd);
  EXPECT_EQ(totals.union_ns[0], expect0);
  EXPECT_EQ(totals.union_ns[1], expect1);
  EXPECT_EQ(totals.exclusive_ns[0], expect0);
  EXPECT_EQ(totals.exclusive_ns[1], expect1 / 2);
  EXPECT_LE(t.held_intervals(), 60'000u) << "only the last two lags' intervals are held (not 360 000)";
}

TEST(SlowestMoments, KeepsTheLongestN) {
  sp::SlowestMoments top(3);
  int built = 0;
  for (std::uint64_t d : {5, 1, 9, 7, 3, 8}) {
    top.offer(d, [&] {
      ++built;
      return sp::SlowMoment{"gc", "x", 100, 100 + d, 0};
    });
  }
  const auto m = top.longest_first();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].end_ns - m[0].start_ns, 9u);
  EXPECT_EQ(m[1].end_ns - m[1].start_ns, 8u);
  EXPECT_EQ(m[2].end_ns - m[2].start_ns, 7u);
  EXPECT_LT(built, 6) << "moments shorter than the N kept are not built";
}
