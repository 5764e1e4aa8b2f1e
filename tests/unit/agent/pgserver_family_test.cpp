// PgServerFamily against a fake kernel (family_fakes.h): which backends get the probes (only those serving a worker,
// attached per process; the fake kernel, like the real one, sees nothing of the others), when they are attached and
// detached, and which worker a backend's statements, lock waits and kernel totals are charged to, as the scans, the
// postmasters' children (a fake /proc) and the backend linker (a script here) decide it.
#include "agent/families/pgserver_family.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "family_fakes.h"

namespace sp::agent::test {
namespace {

const WorkerInfo kSync = worker(10, "synchrotron1");
const WorkerInfo kFed = worker(11, "federation_sender1", "synapse.app.federation_sender");
const WorkerLabels kSyncLabels = labels_of(kSync);
const WorkerLabels kFedLabels = labels_of(kFed);

class PgServerFamilyTest : public ::testing::Test {
 protected:
  PgServerFamilyTest()
      : family_(proc_.path(), open_fake<FakePgServerKernel, PgServerKernel>(kernel_), linker_.linker()) {
    family_.set_sink(&sink_);
    std::string why_not;
    EXPECT_TRUE(family_.start(why_not)) << why_not;
  }

  // The postmaster's children as /proc/PM/task/PM/children lists them (the fast path's view between rescans).
  void children(const std::vector<int>& pids) {
    const auto dir = std::filesystem::path(proc_.path()) / std::to_string(kPostmasterPid) / "task" /
                     std::to_string(kPostmasterPid);
    std::filesystem::create_directories(dir);
    std::ofstream out(dir / "children");
    for (int pid : pids) out << pid << ' ';
  }
  // A process that still exists under the fake /proc (an attach failure of it is a real one).
  void exists(int pid) {
    std::filesystem::create_directories(std::filesystem::path(proc_.path()) / std::to_string(pid));
  }

  void rescan(std::vector<WorkerInfo> workers, const std::vector<PostgresProcess>& backends) {
    auto [result, diff] = scans_.next(std::move(workers), backends);
    family_.update(result, diff);
  }

  // Statements of `verb` charged to `w` (the db_server series).
  std::uint64_t statements(const WorkerLabels& w, const std::string& verb) const {
    const auto snap = family_.snapshot();
    auto it = snap.queries.find({w, verb});
    return it == snap.queries.end() ? 0 : it->second.count;
  }
  BackendTotals totals(const WorkerLabels& w) const {
    const auto snap = family_.snapshot();
    auto it = snap.backends.find(w);
    return it == snap.backends.end() ? BackendTotals{} : it->second;
  }

  TempDir proc_{"sp-pgserver-proc"};
  FakePgServerKernel* kernel_ = nullptr;
  ScriptedLinker linker_;
  CapturingSink sink_;
  Scans scans_;
  PgServerFamily family_;
};

TEST_F(PgServerFamilyTest, StatementsOfAMappedBackendGoToItsWorker) {
  linker_.connect(100, kSync.key.pid);
  rescan({kSync}, {backend(100)});
  const auto select =
      kernel_->statement(100, "SELECT event_id FROM events WHERE room_id = '!secret:example.org'", 3'000'000);
  kernel_->statement(100, "INSERT INTO receipts (user_id) VALUES ('@alice:example.org')", 1'000'000);
  family_.poll();

  ASSERT_EQ(sink_.queries.size(), 2u);
  const QueryEvent& q = sink_.queries[0];
  EXPECT_TRUE(q.server_side);
  EXPECT_EQ(q.worker, kSyncLabels);
  EXPECT_EQ(q.tgid, 100u);
  EXPECT_EQ(q.start_ns, select.start_ns);
  EXPECT_EQ(q.end_ns, select.end_ns);
  EXPECT_EQ(q.verb, "SELECT");
  EXPECT_EQ(q.table, "events");
  EXPECT_NE(q.fingerprint_id, 0u);
  EXPECT_EQ(q.fingerprint.find("secret"), std::string::npos) << q.fingerprint;
  EXPECT_EQ(sink_.queries[1].verb, "INSERT");
  EXPECT_EQ(sink_.queries[1].table, "receipts");

  const auto snap = family_.snapshot();
  EXPECT_EQ(snap.queries.at({kSyncLabels, "SELECT"}).count, 1u);
  EXPECT_EQ(snap.queries.at({kSyncLabels, "SELECT"}).sum_ns, 3'000'000u);
  EXPECT_EQ(snap.queries.at({kSyncLabels, "INSERT"}).count, 1u);
  EXPECT_EQ(snap.queries.size(), 2u);
  EXPECT_EQ(snap.backends_mapped, 1u);
  EXPECT_EQ(snap.backends_unmapped, 0u);
}

TEST_F(PgServerFamilyTest, WithoutFingerprintsTheSinkGetsTheVerbOnly) {
  family_.set_fingerprints(false);
  linker_.connect(100, kSync.key.pid);
  rescan({kSync}, {backend(100)});
  kernel_->statement(100, "UPDATE users SET name = 'x'");
  family_.drain();

  ASSERT_EQ(sink_.queries.size(), 1u);
  EXPECT_EQ(sink_.queries[0].verb, "UPDATE");
  EXPECT_EQ(sink_.queries[0].fingerprint, "");
  EXPECT_EQ(sink_.queries[0].fingerprint_id, 0u);
  EXPECT_EQ(statements(kSyncLabels, "UPDATE"), 1u);
}

// Only the backends serving a worker get the probes, each in its own process, through its own root; the others
// (psql, another application, pgbench on another database) never trap.
TEST_F(PgServerFamilyTest, OnlyBackendsServingAWorkerAreAttached) {
  linker_.connect(100, kSync.key.pid);
  linker_.connect(101, kFed.key.pid);
  rescan({kSync, kFed}, {backend(100), backend(101), backend(103)});
  EXPECT_TRUE(kernel_->is_attached(100));
  EXPECT_TRUE(kernel_->is_attached(101));
  EXPECT_FALSE(kernel_->is_attached(103));
  EXPECT_EQ(kernel_->count_calls("attach 103"), 0u);
  EXPECT_EQ(kernel_->attached_path(100), proc_.path() + "/100/root/usr/lib/postgresql/16/bin/postgres");
  EXPECT_EQ(family_.snapshot().backends_attached, 2u);
  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 2u);
  for (const auto& st : status) {
    EXPECT_EQ(st.probe, "postgres");
    EXPECT_TRUE(st.attached) << st.labels.worker;
  }

  kernel_->statement(100, "SELECT 1 FROM events");
  kernel_->statement(101, "SELECT 1 FROM device_inbox");
  kernel_->statement(103, "SELECT abalance FROM pgbench_accounts WHERE aid = 1");
  family_.poll();
  EXPECT_EQ(kernel_->untrapped(103), 1u);
  EXPECT_EQ(statements(kSyncLabels, "SELECT"), 1u);
  EXPECT_EQ(statements(kFedLabels, "SELECT"), 1u);
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 0u);

  // Attached once: later rescans leave them be.
  rescan({kSync, kFed}, {backend(100), backend(101), backend(103)});
  EXPECT_EQ(kernel_->count_calls("attach 100"), 1u);
  EXPECT_EQ(kernel_->count_calls("detach 100"), 0u);
}

// A connection a known worker opens between two rescans is found at the next poll among the postmaster's children
// and attached then; its statements before that are missed by the server side.
TEST_F(PgServerFamilyTest, NewConnectionOfAKnownWorkerIsAttachedAtTheNextPoll) {
  rescan({kSync}, {});
  linker_.connect(105, kSync.key.pid);
  children({105});
  kernel_->statement(105, "SELECT 1 FROM users");  // before the poll: not attached yet
  family_.poll();
  EXPECT_TRUE(kernel_->is_attached(105));
  EXPECT_EQ(kernel_->attached_path(105), proc_.path() + "/105/root/usr/lib/postgresql/16/bin/postgres");
  EXPECT_EQ(family_.backend_decisions().at(105), kSyncLabels);
  EXPECT_EQ(kernel_->untrapped(105), 1u);

  kernel_->statement(105, "UPDATE users SET name = 'x'");
  family_.poll();
  ASSERT_EQ(sink_.queries.size(), 1u);
  EXPECT_EQ(sink_.queries[0].verb, "UPDATE");
  EXPECT_EQ(statements(kSyncLabels, "UPDATE"), 1u);
  // Looked up once, and the next scan that lists it does not attach it again.
  rescan({kSync}, {backend(105)});
  EXPECT_EQ(linker_.asked(), (std::vector<std::vector<int>>{{105}}));
  EXPECT_EQ(kernel_->count_calls("attach 105"), 1u);
}

// A child the linker cannot map between rescans (a worker started after the last scan, PostgreSQL's own helpers,
// another client) is looked up once, not attached, and decided by the next rescan that lists it.
TEST_F(PgServerFamilyTest, NewChildOfAnUnknownClientWaitsForTheRescan) {
  rescan({kSync}, {});
  linker_.connect(101, kFed.key.pid);
  children({101});
  family_.poll();
  family_.poll();
  EXPECT_EQ(linker_.asked(), (std::vector<std::vector<int>>{{101}}));
  EXPECT_FALSE(kernel_->is_attached(101));
  EXPECT_FALSE(family_.backend_decisions().count(101));

  rescan({kSync, kFed}, {backend(101)});
  EXPECT_TRUE(kernel_->is_attached(101));
  EXPECT_EQ(family_.backend_decisions().at(101), kFedLabels);
  kernel_->statement(101, "DELETE FROM device_inbox WHERE stream_id < 5");
  kernel_->commit(101);
  family_.poll();
  EXPECT_EQ(statements(kFedLabels, "DELETE"), 1u);
  EXPECT_EQ(totals(kFedLabels).commits, 1u);
}

// A backend that exits is detached (after a last read of its counts); a backend whose worker has gone is detached
// while it lingers, and its worker coming back under the same name brings the probes back.
TEST_F(PgServerFamilyTest, BackendsAreDetachedWhenTheyExitOrTheirWorkerGoes) {
  linker_.connect(100, kSync.key.pid);
  linker_.connect(101, kFed.key.pid);
  rescan({kSync, kFed}, {backend(100), backend(101)});
  ASSERT_TRUE(kernel_->is_attached(100));
  ASSERT_TRUE(kernel_->is_attached(101));

  rescan({kSync, kFed}, {backend(101)});  // 100 exited
  EXPECT_FALSE(kernel_->is_attached(100));
  EXPECT_EQ(kernel_->count_calls("detach 100"), 1u);

  rescan({kSync}, {backend(101)});  // the federation sender exited; its backend has not noticed yet
  EXPECT_FALSE(kernel_->is_attached(101));
  kernel_->statement(101, "SELECT 1");
  family_.poll();
  EXPECT_EQ(kernel_->untrapped(101), 1u);
  EXPECT_TRUE(sink_.queries.empty());

  rescan({kSync, kFed}, {backend(101)});
  EXPECT_TRUE(kernel_->is_attached(101));
  EXPECT_EQ(family_.snapshot().backends_attached, 1u);
}

// An attach that fails because the backend has just exited is not an error; one of a running backend is reported
// (once: the family does not retry it every poll).
TEST_F(PgServerFamilyTest, AttachFailuresOfRunningBackendsAreReportedOnce) {
  linker_.connect(100, kSync.key.pid);
  linker_.connect(101, kSync.key.pid);
  kernel_->fail_attach(100);  // exited: no /proc/100 under the fake root
  kernel_->fail_attach(101);
  exists(101);
  rescan({kSync}, {backend(100), backend(101)});
  family_.poll();
  rescan({kSync}, {backend(100), backend(101)});
  const auto snap = family_.snapshot();
  ASSERT_EQ(snap.attach_errors.size(), 1u);
  EXPECT_NE(snap.attach_errors[0].find("backend 101"), std::string::npos) << snap.attach_errors[0];
  EXPECT_EQ(kernel_->count_calls("attach 101"), 1u);
  EXPECT_EQ(snap.backends_attached, 0u);
  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_FALSE(status[0].attached);
  EXPECT_EQ(status[0].error, "0 of the 2 backends serving it attached");
}

// A backend the scan lists has its client in the same scan: when no worker owns the other end, it is decided
// "other", once for its life.
TEST_F(PgServerFamilyTest, ListedBackendTheLinkerCannotMapIsOther) {
  linker_.connect(100, kSync.key.pid);
  rescan({kSync}, {backend(100), backend(103)});
  EXPECT_EQ(family_.backend_decisions(), (std::map<int, WorkerLabels>{{100, kSyncLabels}, {103, kOtherWorker}}));
  EXPECT_TRUE(family_.undecided_backends().empty());

  kernel_->statement(103, "SELECT * FROM pg_stat_activity");
  family_.poll();
  EXPECT_TRUE(sink_.queries.empty());
  EXPECT_EQ(kernel_->untrapped(103), 1u) << "never attached";
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 0u);
  EXPECT_EQ(statements(kSyncLabels, "SELECT"), 0u);
  const auto snap = family_.snapshot();
  EXPECT_EQ(snap.backends_mapped, 1u);
  EXPECT_EQ(snap.backends_unmapped, 1u);

  // Decided for life: not asked about again, whatever the sockets say later.
  const auto asked = linker_.asked().size();
  linker_.connect(103, kSync.key.pid);
  rescan({kSync}, {backend(100), backend(103)});
  EXPECT_EQ(linker_.asked().size(), asked);
  EXPECT_EQ(family_.backend_decisions().at(103), kOtherWorker);
  EXPECT_FALSE(kernel_->is_attached(103));
}

TEST_F(PgServerFamilyTest, LockWaitsReachTheSinkOnlyForBackendsServingAWorker) {
  linker_.connect(100, kSync.key.pid);
  rescan({kSync}, {backend(100), backend(103)});
  const auto mine = kernel_->lock_wait(100, 40'000'000);
  kernel_->lock_wait(103, 10'000'000);
  family_.drain();

  ASSERT_EQ(sink_.lock_waits.size(), 1u);
  EXPECT_EQ(sink_.lock_waits[0].worker, kSyncLabels);
  EXPECT_EQ(sink_.lock_waits[0].backend, 100u);
  EXPECT_EQ(sink_.lock_waits[0].start_ns, mine.start_ns);
  EXPECT_EQ(sink_.lock_waits[0].end_ns, mine.end_ns);

  // The other backend is not attached: its wait is nowhere.
  family_.poll();
  EXPECT_EQ(totals(kSyncLabels).lock_waits.count, 1u);
  EXPECT_EQ(totals(kSyncLabels).lock_waits.sum_ns, 40'000'000u);
  EXPECT_EQ(totals(kOtherWorker).lock_waits.count, 0u);
  EXPECT_EQ(kernel_->untrapped(103), 1u);
}

// The kernel counts per backend; when a backend exits, its counts become part of its worker's totals and its kernel
// entry is freed, so a worker's counters never go back when its connections are replaced.
TEST_F(PgServerFamilyTest, KernelTotalsOfABackendAreRetiredIntoItsWorkerWhenItExits) {
  linker_.connect(100, kSync.key.pid);
  linker_.connect(104, kSync.key.pid);
  rescan({kSync}, {backend(100)});
  for (int i = 0; i < 3; ++i) kernel_->commit(100);
  kernel_->abort(100);
  kernel_->lost_statement(100, 5'000'000);
  kernel_->lost_statement(100, 7'000'000);
  kernel_->lock_wait(100, 1'000'000);
  family_.poll();

  EXPECT_EQ(totals(kSyncLabels).commits, 3u);
  EXPECT_EQ(totals(kSyncLabels).aborts, 1u);
  EXPECT_EQ(totals(kSyncLabels).lock_waits.count, 1u);
  EXPECT_EQ(statements(kSyncLabels, "unknown"), 2u);
  EXPECT_EQ(family_.snapshot().queries.at({kSyncLabels, "unknown"}).sum_ns, 12'000'000u);

  rescan({kSync}, {backend(104)});  // 100 disconnected; a new connection took its place
  EXPECT_FALSE(kernel_->has_backend(100));
  EXPECT_EQ(kernel_->count_calls("erase_backend 100"), 1u);
  EXPECT_FALSE(family_.backend_decisions().count(100));

  kernel_->commit(104);
  kernel_->commit(104);
  family_.poll();
  family_.poll();
  EXPECT_EQ(totals(kSyncLabels).commits, 5u);
  EXPECT_EQ(totals(kSyncLabels).aborts, 1u);
  EXPECT_EQ(totals(kSyncLabels).lock_waits.count, 1u);
  EXPECT_EQ(statements(kSyncLabels, "unknown"), 2u);
}

// What a backend did between the last poll and its exit (its last transaction, a lock wait, a statement whose record
// was lost) is still in the kernel when the rescan finds it gone: it is its worker's, not dropped with the entry.
TEST_F(PgServerFamilyTest, WhatABackendDidAfterTheLastPollIsKeptWhenItExits) {
  linker_.connect(100, kSync.key.pid);
  rescan({kSync}, {backend(100)});
  kernel_->commit(100);
  family_.poll();

  kernel_->commit(100);
  kernel_->lost_statement(100, 3'000'000);
  const auto last_wait = kernel_->lock_wait(100, 20'000'000);
  rescan({kSync}, {});
  family_.poll();
  EXPECT_FALSE(kernel_->has_backend(100));
  EXPECT_EQ(totals(kSyncLabels).commits, 2u);
  EXPECT_EQ(totals(kSyncLabels).lock_waits.count, 1u);
  EXPECT_EQ(statements(kSyncLabels, "unknown"), 1u);
  ASSERT_EQ(sink_.lock_waits.size(), 1u);
  EXPECT_EQ(sink_.lock_waits[0].worker, kSyncLabels);
  EXPECT_EQ(sink_.lock_waits[0].end_ns, last_wait.end_ns);
}

// A connection of a known worker attached between two scans (the fast path) that ends before a scan lists it: the
// next scan lets it go like any exited backend (detached, its kernel entry freed), so that a later process with its
// PID is decided anew.
TEST_F(PgServerFamilyTest, BackendAttachedBetweenRescansIsLetGoWhenTheNextScanDoesNotListIt) {
  rescan({kSync}, {});
  linker_.connect(105, kSync.key.pid);
  children({105});
  family_.poll();
  kernel_->statement(105, "SELECT 1 FROM users");
  kernel_->commit(105);
  family_.poll();
  ASSERT_EQ(sink_.queries.size(), 1u);
  EXPECT_EQ(family_.backend_decisions().at(105), kSyncLabels);

  linker_.disconnect(105);
  children({});
  rescan({kSync}, {});
  EXPECT_FALSE(family_.backend_decisions().count(105));
  EXPECT_FALSE(kernel_->has_backend(105));
  EXPECT_FALSE(kernel_->is_attached(105));
  EXPECT_EQ(totals(kSyncLabels).commits, 1u);

  // The PID comes back as the backend of a psql session: decided "other", not attached.
  rescan({kSync}, {backend(105)});
  EXPECT_EQ(family_.backend_decisions().at(105), kOtherWorker);
  EXPECT_FALSE(kernel_->is_attached(105));
  kernel_->commit(105);
  family_.poll();
  EXPECT_EQ(totals(kSyncLabels).commits, 1u);
  EXPECT_EQ(totals(kOtherWorker).commits, 0u);
}

}  // namespace
}  // namespace sp::agent::test
