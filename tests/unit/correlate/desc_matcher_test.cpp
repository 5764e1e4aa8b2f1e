#include <gtest/gtest.h>

#include "core/correlate/desc_matcher.h"

namespace {

constexpr std::uint64_t kMs = 1'000'000;
const sp::WorkerLabels kW{"w1", "synapse.app.generic_worker"};
const sp::WorkerLabels kV{"w2", "synapse.app.generic_worker"};

const sp::DescServerTotals& at(const sp::DescMatcher& m, const sp::WorkerLabels& w, const std::string& desc) {
  static const sp::DescServerTotals none;
  auto it = m.totals().find({w, desc});
  return it == m.totals().end() ? none : it->second;
}

}  // namespace

TEST(DescMatcher, AServerIntervalGoesToTheOnlyClientCallAroundIt) {
  sp::DescMatcher m;
  m.add_client(kW, 11, 100 * kMs, 200 * kMs, "persist_events");
  m.add_server(kW, 900, 110 * kMs, 190 * kMs, false);
  m.add_server(kW, 900, 120 * kMs, 130 * kMs, true);  // a lock wait inside that statement
  m.add_client(kW, 11, 300 * kMs, 310 * kMs, "");      // outside any transaction
  m.add_server(kW, 900, 301 * kMs, 309 * kMs, false);
  m.add_server(kW, 900, 400 * kMs, 410 * kMs, false);  // no client call around it
  m.settle(2'000 * kMs);
  EXPECT_EQ(at(m, kW, "persist_events").statements, 1u);
  EXPECT_EQ(at(m, kW, "persist_events").statement_ns, 80 * kMs);
  EXPECT_EQ(at(m, kW, "persist_events").lock_waits, 1u);
  EXPECT_EQ(at(m, kW, "persist_events").lock_wait_ns, 10 * kMs);
  EXPECT_EQ(at(m, kW, "").statements, 1u);
  EXPECT_EQ(at(m, kW, "unmatched").statements, 1u);
}

TEST(DescMatcher, AmbiguityIsResolvedByTheBackendsLearnedThreadOrLeftUnmatched) {
  sp::DescMatcher m;
  // Backend 901 is first seen alone inside thread 12's call: paired with thread 12.
  m.add_client(kW, 12, 0, 50 * kMs, "get_users_in_room");
  m.add_server(kW, 901, 10 * kMs, 40 * kMs, false);
  // Then two threads' calls overlap around an interval of 901, and around one of a backend never paired.
  m.add_client(kW, 12, 100 * kMs, 200 * kMs, "get_users_in_room");
  m.add_client(kW, 13, 90 * kMs, 210 * kMs, "persist_events");
  m.add_server(kW, 901, 120 * kMs, 180 * kMs, false);
  m.add_server(kW, 902, 125 * kMs, 170 * kMs, false);
  m.settle(5'000 * kMs);
  EXPECT_EQ(at(m, kW, "get_users_in_room").statements, 2u);
  EXPECT_EQ(at(m, kW, "persist_events").statements, 0u);
  EXPECT_EQ(at(m, kW, "unmatched").statements, 1u) << "902 has two candidates and no pairing: never guessed";
}

TEST(DescMatcher, WaitsForTheClientCallThatEndsAfterTheServerInterval) {
  sp::DescMatcher m(1'000 * kMs);
  m.add_server(kW, 900, 10 * kMs, 20 * kMs, false);  // drained before the call that sent it
  m.settle(500 * kMs);
  EXPECT_TRUE(m.totals().empty()) << "still inside the grace period";
  m.add_client(kW, 11, 5 * kMs, 25 * kMs, "persist_events");
  m.settle(1'100 * kMs);
  EXPECT_EQ(at(m, kW, "persist_events").statements, 1u);
}

TEST(DescMatcher, WorkersAreSeparateAndForgotten) {
  sp::DescMatcher m;
  m.add_client(kV, 11, 0, 100 * kMs, "on_new_event");
  m.add_server(kW, 900, 10 * kMs, 20 * kMs, false);  // worker w1's backend: w2's call does not count
  m.settle(2'000 * kMs);
  EXPECT_EQ(at(m, kW, "unmatched").statements, 1u);
  EXPECT_EQ(at(m, kW, "on_new_event").statements, 0u);
  m.add_client(kV, 11, 3'000 * kMs, 3'100 * kMs, "on_new_event");
  m.add_server(kV, 905, 3'010 * kMs, 3'020 * kMs, false);
  m.forget(kV);  // decided at once, with the calls known
  EXPECT_EQ(at(m, kV, "on_new_event").statements, 1u);
  m.add_server(kV, 905, 10 * kMs, 20 * kMs, false);
  m.settle(4'000 * kMs);
  EXPECT_EQ(at(m, kV, "unmatched").statements, 1u);
}
