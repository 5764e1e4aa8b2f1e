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

namespace {

std::uint64_t missed(const sp::DescMatcher& m, const sp::WorkerLabels& w) {
  auto it = m.missed().find(w);
  return it == m.missed().end() ? 0 : it->second;
}

}  // namespace

// A new connection's first calls ran before its backend was attached: the calls of that connection before the one
// holding the backend's first seen statement are missed; later gaps (a record the ring lost) are not counted here.
TEST(DescMatcher, CallsOfAConnectionBeforeItsBackendsFirstStatementAreMissed) {
  sp::DescMatcher m;
  constexpr std::uint64_t kConn = 0x5555'0000'1000;
  m.add_client(kW, 11, 0, 5 * kMs, "", kConn);           // SET ... (unseen)
  m.add_client(kW, 11, 10 * kMs, 15 * kMs, "", kConn);   // SHOW ... (unseen)
  m.add_client(kW, 11, 20 * kMs, 30 * kMs, "", kConn);   // BEGIN (unseen)
  m.add_client(kW, 11, 40 * kMs, 60 * kMs, "get_user", kConn);
  m.add_server(kW, 900, 41 * kMs, 59 * kMs, false);      // the first statement after the attach
  m.add_client(kW, 11, 70 * kMs, 80 * kMs, "get_user", kConn);  // its record lost: not "missed"
  m.add_client(kW, 11, 90 * kMs, 99 * kMs, "get_user", kConn);
  m.add_server(kW, 900, 91 * kMs, 98 * kMs, false);
  m.settle(2'000 * kMs);
  EXPECT_EQ(missed(m, kW), 3u);
  EXPECT_EQ(at(m, kW, "get_user").statements, 2u);
}

// Backends attached before their connection sent anything miss nothing; a worker's connections count apart (two
// threads, two connections, two backends), and a connection re-opened at the same address counts from the call after
// the last one its previous backend ran.
TEST(DescMatcher, MissedCallsPerConnectionAcrossThreadsAndReconnects) {
  sp::DescMatcher m;
  constexpr std::uint64_t kA = 0x1000, kB = 0x2000;
  m.add_client(kW, 11, 0, 10 * kMs, "", kA);
  m.add_server(kW, 900, 1 * kMs, 9 * kMs, false);  // A's backend saw its first call
  m.add_client(kW, 12, 2 * kMs, 4 * kMs, "", kB);  // B's first call: unseen
  m.add_client(kW, 12, 20 * kMs, 30 * kMs, "", kB);
  m.add_server(kW, 901, 21 * kMs, 29 * kMs, false);
  // A is closed and a new connection gets the same PGconn address; its backend 902 is attached late.
  m.add_client(kW, 11, 40 * kMs, 50 * kMs, "", kA);  // 900 ran it (seen below)
  m.add_server(kW, 900, 41 * kMs, 49 * kMs, false);
  m.add_client(kW, 11, 60 * kMs, 61 * kMs, "", kA);  // the new connection: unseen
  m.add_client(kW, 11, 62 * kMs, 63 * kMs, "", kA);  // unseen
  m.add_client(kW, 11, 70 * kMs, 80 * kMs, "", kA);
  m.add_server(kW, 902, 71 * kMs, 79 * kMs, false);
  // Another worker's connection at the same address is its own.
  m.add_client(kV, 21, 0, 10 * kMs, "", kA);
  m.add_client(kV, 21, 20 * kMs, 30 * kMs, "", kA);
  m.add_server(kV, 950, 21 * kMs, 29 * kMs, false);
  m.settle(2'000 * kMs);
  EXPECT_EQ(missed(m, kW), 1u + 2u);
  EXPECT_EQ(missed(m, kV), 1u);
}

// A worker with no statement missed still has its counter (0), from its first call on; forget_totals drops it.
TEST(DescMatcher, MissedCounterExistsFromTheFirstCallAndGoesWithTheTotals) {
  sp::DescMatcher m;
  m.add_client(kW, 11, 0, 10 * kMs, "", 0x1000);
  m.add_server(kW, 900, 1 * kMs, 9 * kMs, false);
  m.settle(2'000 * kMs);
  ASSERT_EQ(m.missed().count(kW), 1u);
  EXPECT_EQ(missed(m, kW), 0u);
  m.forget(kW);
  m.forget_totals(kW);
  EXPECT_EQ(m.missed().count(kW), 0u);
}
