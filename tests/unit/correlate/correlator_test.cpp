#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/correlate/correlator.h"
#include "core/scrape/prom_text.h"

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kSec = 1'000 * kMs;
const sp::WorkerLabels kW{"w1", "synapse.app.generic_worker"};
const sp::WorkerLabels kOther{"w2", "synapse.app.generic_worker"};

std::uint64_t brute_union(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& ivs, std::uint64_t from,
                          std::uint64_t to) {
  std::uint64_t total = 0;
  for (std::uint64_t t = from; t < to; ++t) {
    for (auto [s, e] : ivs) {
      if (s <= t && t < e) {
        ++total;
        break;
      }
    }
  }
  return total;
}

sp::SynapseCounters counters(std::optional<double> query, std::optional<double> gc) {
  sp::SynapseCounters c;
  c.query_time_sum = query;
  c.gc_time_sum = gc;
  return c;
}

}  // namespace

TEST(IntervalUnion, MatchesABruteForceUnionInAnyInsertOrder) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 40; ++round) {
    sp::IntervalUnion u;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ivs;
    for (int i = 0; i < 50; ++i) {
      std::uint64_t s = rng() % 2000;
      std::uint64_t e = s + rng() % 120;
      ivs.push_back({s, e});
      u.add(s, e);
    }
    for (auto [from, to] : {std::pair<std::uint64_t, std::uint64_t>{0, 2200}, {300, 900}, {1999, 2001}}) {
      EXPECT_EQ(u.covered(from, to), brute_union(ivs, from, to)) << "round " << round << " [" << from << ", " << to
                                                                  << ")";
    }
    EXPECT_EQ(u.bridged_ns(), 0u);
  }
}

TEST(IntervalUnion, ForgetsWhatEndedBeforeTheHorizon) {
  sp::IntervalUnion u;
  u.add(0, 10);
  u.add(20, 30);
  u.add(40, 50);
  u.forget_before(30);  // [20, 30) ends at 30: gone
  EXPECT_EQ(u.size(), 1u);
  EXPECT_EQ(u.covered(0, 100), 10u);
}

TEST(IntervalUnion, BoundedMemoryOnlyOverstatesByTheGapsItBridges) {
  sp::IntervalUnion u(64);
  std::uint64_t real = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {  // 1000 disjoint 1 us intervals, 500 ns apart
    u.add(i * 1500, i * 1500 + 1000);
    real += 1000;
  }
  EXPECT_LE(u.size(), 64u);
  const std::uint64_t covered = u.covered(0, 2'000'000);
  EXPECT_GE(covered, real);
  EXPECT_EQ(covered, real + u.bridged_ns());
  EXPECT_GT(u.bridged_ns(), 0u);
}

TEST(SynapseCounters, SumsEveryLabelSetOfTheTwoHistograms) {
  auto parsed = sp::prom::parse_prometheus_text(
      "# TYPE python_gc_time histogram\n"
      "python_gc_time_bucket{gen=\"0\",le=\"+Inf\"} 3\n"
      "python_gc_time_sum{gen=\"0\"} 0.25\n"
      "python_gc_time_sum{gen=\"2\"} 1.5\n"
      "# TYPE synapse_storage_query_time histogram\n"
      "synapse_storage_query_time_sum{verb=\"SELECT\"} 2\n"
      "synapse_storage_query_time_sum{verb=\"INSERT\"} 0.5\n"
      "synapse_storage_query_time_count{verb=\"INSERT\"} 9\n");
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  auto c = sp::synapse_counters(parsed.families);
  ASSERT_TRUE(c.gc_time_sum && c.query_time_sum);
  EXPECT_DOUBLE_EQ(*c.gc_time_sum, 1.75);
  EXPECT_DOUBLE_EQ(*c.query_time_sum, 2.5);
  auto none = sp::synapse_counters({});
  EXPECT_FALSE(none.gc_time_sum || none.query_time_sum);
}

// Synapse times 1 s of queries per 10 s while libpq accounts 0.6 s of it: 0.4 s of overhead per interval.
TEST(Correlator, PythonOverheadIsSynapseQueryTimeMinusLibpqTime) {
  sp::Correlator c;
  c.watch(kW, 0);
  double synapse = 5.0;  // the worker's counter before the agent came: only increases count
  std::uint64_t t = 0;
  c.tick(t);
  c.add_scrape(kW, t, counters(synapse, std::nullopt));
  for (int interval = 0; interval < 6; ++interval) {
    for (int q = 0; q < 10; ++q) {  // ten 60 ms libpq calls (plus a COMMIT Synapse does not time)
      std::uint64_t s = t + static_cast<std::uint64_t>(q) * 900 * kMs + 10 * kMs;
      c.add_query(kW, s, s + 60 * kMs, true);
      c.add_query(kW, s + 70 * kMs, s + 80 * kMs, false);
    }
    t += 10 * kSec;
    c.tick(t);
    synapse += 1.0;
    c.add_scrape(kW, t, counters(synapse, std::nullopt));
  }
  auto snap = c.snapshot();
  ASSERT_TRUE(snap.at(kW).python_overhead_seconds);
  EXPECT_NEAR(*snap.at(kW).python_overhead_seconds, 6 * 0.4, 1e-9);
}

TEST(Correlator, OverheadReadsTheProbesAtTheScrapesOwnTime) {
  sp::Correlator c;
  c.watch(kW, 0);
  c.tick(0);
  c.add_scrape(kW, 0, counters(0.0, std::nullopt));
  // 1 s of libpq time ends at 1 s, a second one at 3 s; the scrape at 2 s sees only the first in Synapse's counter,
  // and arrives (is added) after the tick at 4 s that already includes the second.
  c.add_query(kW, 0, 1 * kSec, true);
  c.tick(2 * kSec);
  c.add_query(kW, 2 * kSec, 3 * kSec, true);
  c.tick(4 * kSec);
  c.add_scrape(kW, 2 * kSec, counters(1.25, std::nullopt));
  auto snap = c.snapshot();
  EXPECT_NEAR(*snap.at(kW).python_overhead_seconds, 0.25, 1e-9);
}

TEST(Correlator, OverheadNeverDecreasesAndSurvivesAWorkerRestart) {
  sp::Correlator c;
  c.watch(kW, 0);
  c.tick(0);
  c.add_scrape(kW, 0, counters(10.0, std::nullopt));
  c.add_query(kW, 0, 500 * kMs, true);
  c.tick(1 * kSec);
  c.add_scrape(kW, 1 * kSec, counters(11.0, std::nullopt));  // +1 s Synapse, 0.5 s libpq: +0.5
  EXPECT_NEAR(*c.snapshot().at(kW).python_overhead_seconds, 0.5, 1e-9);
  // Jitter: libpq accounted a query whose Synapse timing lands in the next scrape; the counter holds.
  c.add_query(kW, 1 * kSec, 1200 * kMs, true);
  c.tick(2 * kSec);
  c.add_scrape(kW, 2 * kSec, counters(11.0, std::nullopt));
  EXPECT_NEAR(*c.snapshot().at(kW).python_overhead_seconds, 0.5, 1e-9);
  c.tick(3 * kSec);
  c.add_scrape(kW, 3 * kSec, counters(11.3, std::nullopt));  // ... and catches up
  EXPECT_NEAR(*c.snapshot().at(kW).python_overhead_seconds, 0.6, 1e-9);
  // The worker restarted: Synapse's counter starts over from 0.
  c.add_query(kW, 3 * kSec, 3100 * kMs, true);
  c.tick(4 * kSec);
  c.add_scrape(kW, 4 * kSec, counters(0.3, std::nullopt));
  EXPECT_NEAR(*c.snapshot().at(kW).python_overhead_seconds, 0.8, 1e-9);
}

TEST(Correlator, NoSynapseCountersNoDerivedSeries) {
  sp::Correlator c;
  c.watch(kW, 0);
  c.add_gc(kW, 0, 10 * kMs);
  c.tick(2 * kSec);
  c.add_scrape(kW, 1 * kSec, counters(std::nullopt, std::nullopt));
  c.tick(3 * kSec);
  c.add_scrape(kW, 3 * kSec, counters(std::nullopt, std::nullopt));
  auto snap = c.snapshot();
  EXPECT_FALSE(snap.at(kW).python_overhead_seconds);
  EXPECT_FALSE(snap.at(kW).gc_coverage_ratio);
  EXPECT_TRUE(snap.at(kW).time_share);
}

TEST(Correlator, GcCoverageComparesProbePausesWithSynapsesOwnGcTime) {
  sp::CorrelationOptions o;
  o.window_ns = 30 * kSec;
  sp::Correlator c(o);
  c.watch(kW, 0);
  c.watch(kOther, 0);
  double synapse = 100.0;
  for (int s = 0; s <= 60; ++s) {
    const std::uint64_t t = static_cast<std::uint64_t>(s) * kSec;
    if (s > 0) {
      c.add_gc(kW, t - 500 * kMs, t - 480 * kMs);  // 20 ms a second, Synapse timed 25 ms
      c.add_gc(kOther, t - 500 * kMs, t - 490 * kMs);  // collections Synapse never timed
      synapse += 0.025;
    }
    c.tick(t);
    if (s % 15 == 0) {
      c.add_scrape(kW, t, counters(std::nullopt, synapse));
      c.add_scrape(kOther, t, counters(std::nullopt, 7.0));
    }
  }
  auto snap = c.snapshot();
  ASSERT_TRUE(snap.at(kW).gc_coverage_ratio);
  EXPECT_NEAR(*snap.at(kW).gc_coverage_ratio, 0.8, 1e-6);
  ASSERT_TRUE(snap.at(kOther).gc_coverage_ratio);
  EXPECT_TRUE(std::isinf(*snap.at(kOther).gc_coverage_ratio));
}

TEST(Correlator, GcCoverageStartsAfterACounterReset) {
  sp::Correlator c;
  c.watch(kW, 0);
  c.tick(0);
  c.add_scrape(kW, 0, counters(std::nullopt, 50.0));
  c.add_gc(kW, 100 * kMs, 200 * kMs);
  c.tick(1 * kSec);
  c.add_scrape(kW, 1 * kSec, counters(std::nullopt, 0.05));  // restarted: only scrapes from here on compare
  c.add_gc(kW, 1100 * kMs, 1200 * kMs);
  c.tick(2 * kSec);
  c.add_scrape(kW, 2 * kSec, counters(std::nullopt, 0.15));
  EXPECT_NEAR(*c.snapshot().at(kW).gc_coverage_ratio, 1.0, 1e-9);
}

TEST(Correlator, TimeShareIsTheUnionOfEachCauseOverTheWindow) {
  sp::CorrelationOptions o;
  o.window_ns = 10 * kSec;
  sp::Correlator c(o);
  c.watch(kW, 0);
  c.watch(kOther, 0);
  c.tick(0);
  // 20 s of activity; only the last 10 s count. Two concurrent 1 s queries per 2 s count once (50 %).
  for (std::uint64_t s = 0; s < 20; s += 2) {
    c.add_query(kW, s * kSec, (s + 1) * kSec, true);
    c.add_query(kW, s * kSec + 500 * kMs, (s + 1) * kSec, true);
    c.add_server(kW, s * kSec + 100 * kMs, s * kSec + 300 * kMs);  // 10 %
    c.add_gc(kW, (s + 1) * kSec, (s + 1) * kSec + 200 * kMs);       // 10 %
    c.add_disk(kW, s * kSec, s * kSec + 50 * kMs);                  // 2.5 %
    c.add_disk(kW, s * kSec + 10 * kMs, s * kSec + 40 * kMs);
    c.tick((s + 2) * kSec);
  }
  auto snap = c.snapshot();
  ASSERT_TRUE(snap.at(kW).time_share);
  const auto& share = *snap.at(kW).time_share;
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::DbClient)], 0.5, 1e-9);
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::DbServer)], 0.1, 1e-9);
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::Gc)], 0.1, 1e-9);
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::Disk)], 0.025, 1e-9);
  EXPECT_DOUBLE_EQ(snap.at(kW).window_seconds, 10.0);
  ASSERT_TRUE(snap.at(kOther).time_share);  // an idle worker: zero, not absent
  for (double v : *snap.at(kOther).time_share) EXPECT_EQ(v, 0.0);
}

TEST(Correlator, TimeShareOfANewWorkerCoversOnlyTheTimeItWasWatched) {
  sp::CorrelationOptions o;
  o.window_ns = 60 * kSec;
  sp::Correlator c(o);
  c.tick(100 * kSec);
  c.watch(kW, 100 * kSec);
  c.tick(100 * kSec + 500 * kMs);
  EXPECT_FALSE(c.snapshot().at(kW).time_share) << "half a second is too short to report a share";
  c.add_gc(kW, 99 * kSec, 101 * kSec);  // started before the worker was watched: only the watched part counts
  c.tick(104 * kSec);
  auto snap = c.snapshot();
  ASSERT_TRUE(snap.at(kW).time_share);
  EXPECT_NEAR((*snap.at(kW).time_share)[static_cast<std::size_t>(sp::Cause::Gc)], 0.25, 1e-9);
  EXPECT_DOUBLE_EQ(snap.at(kW).window_seconds, 4.0);
}

// A scan finds a worker between two ticks: it is watched from the scan, not from the tick before it, so what it did
// before it was found (its start-up reads, drained in the same round) adds nothing to its shares.
TEST(Correlator, AWorkerFoundBetweenTicksIsWatchedFromTheScan) {
  sp::CorrelationOptions o;
  o.window_ns = 60 * kSec;
  sp::Correlator c(o);
  c.tick(100 * kSec);
  c.watch(kW, 100 * kSec + 200 * kMs);
  c.add_disk(kW, 100 * kSec + 50 * kMs, 100 * kSec + 150 * kMs);  // before the scan found it
  c.add_disk(kW, 100 * kSec + 150 * kMs, 100 * kSec + 400 * kMs);  // its watched part: 200 ms
  c.tick(102 * kSec + 200 * kMs);
  auto snap = c.snapshot();
  ASSERT_TRUE(snap.at(kW).time_share);
  EXPECT_NEAR((*snap.at(kW).time_share)[static_cast<std::size_t>(sp::Cause::Disk)], 0.1, 1e-9);
  EXPECT_DOUBLE_EQ(snap.at(kW).window_seconds, 2.0);
}

TEST(Correlator, ForgottenWorkersDisappear) {
  sp::Correlator c;
  c.watch(kW, 0);
  c.forget(kW);
  EXPECT_TRUE(c.snapshot().empty());
}
