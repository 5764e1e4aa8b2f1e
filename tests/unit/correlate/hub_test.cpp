// The correlation hub on scripted event sequences: scans, events and scrapes built by hand, every expected value
// worked out from the script (the views' own arithmetic is tested beside them; here, what the hub feeds them).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "../agent/family_test_util.h"
#include "core/correlate/hub.h"
#include "core/model/db_stats.h"
#include "core/scrape/prom_text.h"

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kSec = 1'000 * kMs;
const std::string kApp = "synapse.app.generic_worker";
const sp::WorkerLabels kW1{"w1", kApp};
const sp::WorkerLabels kW2{"w2", kApp};

sp::WorkerInfo process(int pid, const sp::WorkerLabels& labels) {
  return sp::test::make_worker(pid, labels.worker, labels.worker_app);
}

sp::ScanResult scan(std::vector<sp::WorkerInfo> workers) {
  sp::ScanResult r;
  r.workers = std::move(workers);
  return r;
}

sp::ScanDiff diff(std::vector<sp::WorkerInfo> added, std::vector<sp::WorkerInfo> removed = {}) {
  sp::ScanDiff d;
  d.added = std::move(added);
  d.removed = std::move(removed);
  return d;
}

sp::GcPause pause(const sp::WorkerLabels& w, std::uint32_t tgid, std::uint64_t start_ns, std::uint64_t end_ns) {
  sp::GcPause p;
  p.worker = w;
  p.tgid = tgid;
  p.tid = tgid;
  p.start_ns = start_ns;
  p.end_ns = end_ns;
  p.generation = 2;
  return p;
}

sp::QueryEvent client(const sp::WorkerLabels& w, std::uint32_t tgid, std::uint32_t tid, std::uint64_t start_ns,
                      std::uint64_t end_ns, const std::string& verb = "SELECT", const std::string& desc = "") {
  sp::QueryEvent q;
  q.worker = w;
  q.tgid = tgid;
  q.tid = tid;
  q.start_ns = start_ns;
  q.end_ns = end_ns;
  q.verb = verb;
  q.desc = desc;
  return q;
}

sp::QueryEvent server(const sp::WorkerLabels& w, std::uint32_t backend, std::uint64_t start_ns,
                      std::uint64_t end_ns) {
  sp::QueryEvent q;
  q.worker = w;
  q.server_side = true;
  q.tgid = backend;
  q.tid = backend;
  q.start_ns = start_ns;
  q.end_ns = end_ns;
  q.verb = "SELECT";
  return q;
}

sp::LockWait lock_wait(const sp::WorkerLabels& w, std::uint32_t backend, std::uint64_t start_ns,
                       std::uint64_t end_ns) {
  sp::LockWait l;
  l.worker = w;
  l.backend = backend;
  l.start_ns = start_ns;
  l.end_ns = end_ns;
  return l;
}

sp::IoEvent io(const sp::WorkerLabels& w, const std::string& via, std::uint64_t start_ns, std::uint64_t end_ns) {
  sp::IoEvent e;
  e.worker = w;
  e.via = via;
  e.device = "vda";
  e.op = "read";
  e.bytes = 8192;
  e.start_ns = start_ns;
  e.issue_ns = start_ns;
  e.complete_ns = end_ns;
  return e;
}

// A successful scrape of a worker that started at `at_ns` on the probes' clock and read `query_time_sum`.
sp::ScrapeResult scrape(std::uint64_t at_ns, double query_time_sum) {
  auto parsed = sp::prom::parse_prometheus_text(
      "# TYPE synapse_storage_query_time histogram\n"
      "synapse_storage_query_time_sum{verb=\"select\"} " +
      std::to_string(query_time_sum) + "\nsynapse_storage_query_time_count{verb=\"select\"} 7\n");
  EXPECT_TRUE(parsed.ok()) << parsed.error;
  sp::ScrapeResult r;
  r.up = true;
  r.worker_app = kApp;
  r.started = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(at_ns));
  r.families = std::make_shared<const std::vector<sp::prom::Family>>(std::move(parsed.families));
  return r;
}

std::uint64_t overlap_of(const sp::HubSnapshot& s, const sp::WorkerLabels& w) {
  auto it = s.overlap_ns.find(w);
  return it == s.overlap_ns.end() ? ~0ULL : it->second;
}

bool has_desc_totals_of(const sp::HubSnapshot& s, const sp::WorkerLabels& w) {
  for (const auto& [key, totals] : s.desc_server) {
    if (key.first == w) return true;
  }
  return false;
}

}  // namespace

// A pause [10, 30) ms and [40, 45) ms of process 100 against its query [20, 50) ms: 10 + 5 ms, whichever arrives
// first. Process 101 (same worker) and worker w2 have queries over the pauses' times that must not pair with them.
TEST(CorrelationHub, GcQueryOverlapPairsOnlyTheSameProcessInEitherArrivalOrder) {
  for (bool pause_first : {true, false}) {
    SCOPED_TRACE(pause_first ? "pauses first" : "query first");
    sp::CorrelationHub hub;
    const std::vector<sp::WorkerInfo> workers{process(100, kW1), process(101, kW1), process(200, kW2)};
    hub.update_workers(scan(workers), diff(workers), 0);
    auto s = hub.snapshot();
    // The counter exists from discovery on.
    ASSERT_EQ(s.overlap_ns.size(), 2u);
    EXPECT_EQ(overlap_of(s, kW1), 0u);
    EXPECT_EQ(overlap_of(s, kW2), 0u);

    if (pause_first) {
      hub.gc_pause(pause(kW1, 100, 10 * kMs, 30 * kMs));
      hub.gc_pause(pause(kW1, 100, 40 * kMs, 45 * kMs));
    }
    hub.query(client(kW1, 100, 100, 20 * kMs, 50 * kMs));
    if (!pause_first) {
      hub.gc_pause(pause(kW1, 100, 10 * kMs, 30 * kMs));
      hub.gc_pause(pause(kW1, 100, 40 * kMs, 45 * kMs));
    }
    hub.query(client(kW1, 101, 101, 0, 100 * kMs));
    hub.query(client(kW2, 200, 200, 0, 100 * kMs));
    s = hub.snapshot();
    EXPECT_EQ(overlap_of(s, kW1), 15 * kMs);
    EXPECT_EQ(overlap_of(s, kW2), 0u);
  }
}

// Synapse's query time grows by 0.2 s between two scrapes; libpq saw SELECT 100 ms + UPDATE 50 ms of it plus a
// COMMIT (20 ms) and a ROLLBACK (10 ms) that Synapse does not time: 0.2 - 0.15 = 0.05 s of overhead. Counting the
// COMMIT would give 0.03, both 0.02.
TEST(CorrelationHub, PythonOverheadLeavesCommitAndRollbackOutOfTheProbeSide) {
  sp::CorrelationHub hub;
  hub.update_workers(scan({process(100, kW1)}), diff({process(100, kW1)}), 0);
  ASSERT_EQ(hub.flush(1 * kSec, {{"w1", scrape(1 * kSec, 5.0)}}).size(), 1u);
  auto s = hub.snapshot();
  ASSERT_TRUE(s.correlation.at(kW1).python_overhead_seconds.has_value());
  EXPECT_EQ(*s.correlation.at(kW1).python_overhead_seconds, 0.0);  // the first scrape is the baseline

  hub.query(client(kW1, 100, 100, 1100 * kMs, 1200 * kMs, "SELECT"));
  hub.query(client(kW1, 100, 100, 1300 * kMs, 1350 * kMs, "UPDATE"));
  hub.query(client(kW1, 100, 100, 1360 * kMs, 1380 * kMs, "COMMIT"));
  hub.query(client(kW1, 100, 101, 1500 * kMs, 1510 * kMs, "ROLLBACK"));
  ASSERT_EQ(hub.flush(2500 * kMs, {{"w1", scrape(2 * kSec, 5.2)}}).size(), 1u);
  s = hub.snapshot();
  ASSERT_TRUE(s.correlation.at(kW1).python_overhead_seconds.has_value());
  EXPECT_NEAR(*s.correlation.at(kW1).python_overhead_seconds, 0.05, 1e-9);
}

// Over the 10 s since discovery: GC 0.5 + 0.2 s, two concurrent libpq calls covering [2, 3.5) s, server statements
// 0.3 + 0.1 s, disk requests covering [4, 4.5) s. Each share is its union over the 10 s.
TEST(CorrelationHub, TimeSharesOfAScriptedSequenceAfterFlush) {
  sp::CorrelationHub hub;
  hub.update_workers(scan({process(100, kW1)}), diff({process(100, kW1)}), 0);
  hub.gc_pause(pause(kW1, 100, 1 * kSec, 1500 * kMs));
  hub.gc_pause(pause(kW1, 100, 6 * kSec, 6200 * kMs));
  hub.query(client(kW1, 100, 11, 2 * kSec, 3 * kSec));
  hub.query(client(kW1, 100, 12, 2500 * kMs, 3500 * kMs));
  hub.query(server(kW1, 500, 2100 * kMs, 2400 * kMs));
  hub.query(server(kW1, 500, 7 * kSec, 7100 * kMs));
  hub.query(server(sp::kOtherWorker, 600, 0, 9 * kSec));  // a backend serving nobody profiled: ignored
  hub.io_request(io(kW1, "self", 4 * kSec, 4250 * kMs));
  hub.io_request(io(kW1, "postgres", 4200 * kMs, 4500 * kMs));
  // Nothing is applied before the flush.
  EXPECT_FALSE(hub.snapshot().correlation.at(kW1).time_share.has_value());

  hub.flush(10 * kSec, {});
  const auto s = hub.snapshot();
  ASSERT_EQ(s.correlation.size(), 1u);  // no series for "other"
  const auto& c = s.correlation.at(kW1);
  ASSERT_TRUE(c.time_share.has_value());
  EXPECT_DOUBLE_EQ(c.window_seconds, 10.0);
  const auto& share = *c.time_share;
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::Gc)], 0.07, 1e-12);
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::DbClient)], 0.15, 1e-12);
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::DbServer)], 0.04, 1e-12);
  EXPECT_NEAR(share[static_cast<std::size_t>(sp::Cause::Disk)], 0.05, 1e-12);
}

// A statement and a lock wait of backend 500 inside thread 11's call of "persist_events" go to that desc; a lock wait
// of backend 501 with no client call around it is "unmatched"; a statement of a backend serving "other" goes nowhere.
TEST(CorrelationHub, ServerTimeAndLockWaitsGoToTheDescOfTheCallAroundThem) {
  sp::CorrelationHub hub;
  hub.update_workers(scan({process(100, kW1)}), diff({process(100, kW1)}), 0);
  hub.query(client(kW1, 100, 11, 2 * kSec, 3 * kSec, "INSERT", "persist_events"));
  hub.query(server(kW1, 500, 2100 * kMs, 2400 * kMs));
  hub.lock_wait(lock_wait(kW1, 500, 2200 * kMs, 2300 * kMs));
  hub.lock_wait(lock_wait(kW1, 501, 5 * kSec, 5200 * kMs));
  hub.query(server(sp::kOtherWorker, 600, 2100 * kMs, 2400 * kMs));

  // Intervals are decided a second after they ended: at 3 s, none is.
  hub.flush(3 * kSec, {});
  EXPECT_TRUE(hub.snapshot().desc_server.empty());

  hub.flush(10 * kSec, {});
  const auto s = hub.snapshot();
  ASSERT_EQ(s.desc_server.size(), 2u);
  const auto& matched = s.desc_server.at({kW1, "persist_events"});
  EXPECT_EQ(matched.statements, 1u);
  EXPECT_EQ(matched.statement_ns, 300 * kMs);
  EXPECT_EQ(matched.lock_waits, 1u);
  EXPECT_EQ(matched.lock_wait_ns, 100 * kMs);
  const auto& unmatched = s.desc_server.at({kW1, "unmatched"});
  EXPECT_EQ(unmatched.statements, 0u);
  EXPECT_EQ(unmatched.lock_waits, 1u);
  EXPECT_EQ(unmatched.lock_wait_ns, 200 * kMs);
}

// w1 runs as processes 100 and 101, loses both, restarts as 102 under the same name, then goes for good.
TEST(CorrelationHub, GoneWorkersStopBeingCorrelatedAndAreForgottenAfterForgetAfter) {
  sp::HubOptions options;
  options.forget_after_ns = 10 * kSec;
  sp::CorrelationHub hub(options);
  const auto p100 = process(100, kW1), p101 = process(101, kW1), p102 = process(102, kW1);
  EXPECT_TRUE(hub.update_workers(scan({p100, p101}), diff({p100, p101}), 0).empty());
  hub.gc_pause(pause(kW1, 100, 10 * kMs, 30 * kMs));
  hub.query(client(kW1, 100, 100, 20 * kMs, 50 * kMs));
  hub.lock_wait(lock_wait(kW1, 500, 100 * kMs, 200 * kMs));
  hub.flush(2 * kSec, {});
  ASSERT_EQ(overlap_of(hub.snapshot(), kW1), 10 * kMs);
  ASSERT_TRUE(has_desc_totals_of(hub.snapshot(), kW1));

  // One process of two gone: still correlated, as watched since 0 (not started over).
  EXPECT_TRUE(hub.update_workers(scan({p101}), diff({}, {p100}), 3 * kSec).empty());
  auto correlation = hub.snapshot().correlation;
  ASSERT_EQ(correlation.count(kW1), 1u);
  ASSERT_TRUE(correlation.at(kW1).time_share.has_value());
  EXPECT_DOUBLE_EQ(correlation.at(kW1).window_seconds, 2.0);

  // Both gone: no longer correlated, but its counters stay until forget_after.
  EXPECT_TRUE(hub.update_workers(scan({}), diff({}, {p101}), 4 * kSec).empty());
  auto s = hub.snapshot();
  EXPECT_EQ(s.correlation.count(kW1), 0u);
  EXPECT_EQ(overlap_of(s, kW1), 10 * kMs);
  EXPECT_TRUE(has_desc_totals_of(s, kW1));

  // A restart under the same name continues its counters, and is not forgotten 10 s after the first went.
  EXPECT_TRUE(hub.update_workers(scan({p102}), diff({p102}), 5 * kSec).empty());
  EXPECT_EQ(hub.snapshot().correlation.count(kW1), 1u);
  hub.gc_pause(pause(kW1, 102, 6 * kSec, 6005 * kMs));
  hub.query(client(kW1, 102, 102, 6 * kSec, 6100 * kMs));
  EXPECT_TRUE(hub.update_workers(scan({p102}), diff({}), 30 * kSec).empty());
  EXPECT_EQ(overlap_of(hub.snapshot(), kW1), 15 * kMs);

  // Gone for good: returned once forget_after has passed, and only once; its totals go with it.
  EXPECT_TRUE(hub.update_workers(scan({}), diff({}, {p102}), 40 * kSec).empty());
  EXPECT_TRUE(hub.update_workers(scan({}), diff({}), 49 * kSec).empty());
  EXPECT_EQ(overlap_of(hub.snapshot(), kW1), 15 * kMs);
  const auto expired = hub.update_workers(scan({}), diff({}), 50 * kSec);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0], kW1);
  s = hub.snapshot();
  EXPECT_EQ(s.overlap_ns.count(kW1), 0u);
  EXPECT_FALSE(has_desc_totals_of(s, kW1));
  EXPECT_TRUE(hub.update_workers(scan({}), diff({}), 60 * kSec).empty());
}

// Families drain a removed process's last events during their update(), before the hub hears the process went: those
// events must not bring the worker back once the hub has let it go.
TEST(CorrelationHub, EventsDrainedAsAWorkerGoesDoNotBringItBack) {
  sp::HubOptions options;
  options.forget_after_ns = 10 * kSec;
  sp::CorrelationHub hub(options);
  const auto p100 = process(100, kW1);
  hub.update_workers(scan({p100}), diff({p100}), 0);
  hub.flush(1 * kSec, {});
  hub.gc_pause(pause(kW1, 100, 1100 * kMs, 1200 * kMs));
  hub.query(client(kW1, 100, 100, 1100 * kMs, 1300 * kMs, "SELECT", "get_users"));
  hub.lock_wait(lock_wait(kW1, 500, 1150 * kMs, 1200 * kMs));
  hub.update_workers(scan({}), diff({}, {p100}), 2 * kSec);
  hub.flush(3 * kSec, {});
  auto s = hub.snapshot();
  EXPECT_EQ(s.correlation.count(kW1), 0u);
  // Its last lock wait is still decided, against its last call.
  ASSERT_EQ(s.desc_server.count({kW1, "get_users"}), 1u);
  EXPECT_EQ(s.desc_server.at({kW1, "get_users"}).lock_waits, 1u);

  // Later events of the gone worker (a backend finishing a statement for it, a scrape that was in flight) are
  // dropped: they do not bring it back either.
  hub.lock_wait(lock_wait(kW1, 500, 3100 * kMs, 3200 * kMs));
  hub.gc_pause(pause(kW1, 100, 3100 * kMs, 3200 * kMs));
  EXPECT_TRUE(hub.flush(4 * kSec, {{"w1", scrape(3 * kSec, 2.0)}}).empty());
  hub.flush(6 * kSec, {});
  s = hub.snapshot();
  EXPECT_EQ(s.correlation.count(kW1), 0u);
  EXPECT_EQ(s.desc_server.count({kW1, "unmatched"}), 0u);

  EXPECT_EQ(hub.update_workers(scan({}), diff({}), 12 * kSec).size(), 1u);
  s = hub.snapshot();
  EXPECT_EQ(s.correlation.count(kW1), 0u);
  EXPECT_FALSE(has_desc_totals_of(s, kW1));
}

TEST(CorrelationHub, EachScrapeIsTakenOncePerStartTime) {
  sp::CorrelationHub hub;
  hub.update_workers(scan({process(100, kW1)}), diff({process(100, kW1)}), 0);
  std::map<std::string, sp::ScrapeResult> scraped{{"w1", scrape(1 * kSec, 1.5)}};
  auto taken = hub.flush(2 * kSec, scraped);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].worker, kW1);
  EXPECT_EQ(taken[0].at_ns, 1 * kSec);
  ASSERT_TRUE(taken[0].counters.query_time_sum.has_value());
  EXPECT_DOUBLE_EQ(*taken[0].counters.query_time_sum, 1.5);
  EXPECT_FALSE(taken[0].counters.gc_time_sum.has_value());

  // The same result handed again, an older one, or a failed one: nothing taken.
  EXPECT_TRUE(hub.flush(2250 * kMs, scraped).empty());
  EXPECT_TRUE(hub.flush(2500 * kMs, {{"w1", scrape(500 * kMs, 1.0)}}).empty());
  sp::ScrapeResult down;
  down.worker_app = kApp;
  down.error = "GET http://127.0.0.1:1/_synapse/metrics: connection refused";
  down.started = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(3 * kSec));
  EXPECT_TRUE(hub.flush(3500 * kMs, {{"w1", down}}).empty());

  taken = hub.flush(4500 * kMs, {{"w1", scrape(4 * kSec, 2.0)}});
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].at_ns, 4 * kSec);
}
