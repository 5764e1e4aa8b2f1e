#include <gtest/gtest.h>

#include <random>

#include "core/correlate/overlap.h"

TEST(Overlap, CountsEachPairOnceWhicheverArrivesFirst) {
  sp::OverlapTracker t;
  // A query [100, 300) and a pause [200, 250): 50 ns of overlap, counted when the second arrives.
  EXPECT_EQ(t.add_query(1, 100, 300), 0u);
  EXPECT_EQ(t.add_pause(1, 200, 250), 50u);
  // The other order.
  EXPECT_EQ(t.add_pause(2, 200, 400), 0u);
  EXPECT_EQ(t.add_query(2, 100, 300), 100u);
  // Another process's pause never counts.
  EXPECT_EQ(t.add_pause(3, 0, 1000), 0u);
  EXPECT_EQ(t.add_query(1, 150, 260), 50u);  // overlaps process 1's pause only: [200, 250)
}

TEST(Overlap, MatchesABruteForceSumOnRandomStreams) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 50; ++round) {
    sp::OverlapTracker t;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> pauses, queries;
    std::uint64_t clock = 0;
    for (int i = 0; i < 20; ++i) {  // pauses do not overlap each other
      clock += rng() % 1000 + 1;
      std::uint64_t len = rng() % 500 + 1;
      pauses.push_back({clock, clock + len});
      clock += len;
    }
    for (int i = 0; i < 60; ++i) {
      std::uint64_t s = rng() % clock;
      queries.push_back({s, s + rng() % 800 + 1});
    }
    std::uint64_t expected = 0;
    for (auto q : queries) {
      for (auto p : pauses) {
        std::uint64_t lo = std::max(q.first, p.first), hi = std::min(q.second, p.second);
        if (hi > lo) expected += hi - lo;
      }
    }
    // Interleave arrivals randomly.
    std::vector<std::pair<bool, std::pair<std::uint64_t, std::uint64_t>>> events;
    for (auto p : pauses) events.push_back({true, p});
    for (auto q : queries) events.push_back({false, q});
    std::shuffle(events.begin(), events.end(), rng);
    std::uint64_t counted = 0;
    for (auto [is_pause, iv] : events) {
      counted += is_pause ? t.add_pause(7, iv.first, iv.second) : t.add_query(7, iv.first, iv.second);
    }
    EXPECT_EQ(counted, expected) << "round " << round;
  }
}

TEST(Overlap, ForgetsIntervalsOlderThanTheWindow) {
  sp::OverlapTracker t(1000);
  t.add_pause(1, 0, 100);
  t.add_query(1, 5000, 6000);       // moves the horizon past the pause
  EXPECT_EQ(t.add_query(1, 50, 80), 0u);  // its pause is gone: not paired
}
