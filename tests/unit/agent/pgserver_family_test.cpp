// PgServerFamily against a fake kernel (family_fakes.h): which worker a backend's statements, lock waits and kernel
// totals are charged to, and when, as the scans and the backend linker (a script here) decide it.
#include "agent/families/pgserver_family.h"

#include <gtest/gtest.h>

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
      : family_("/nonexistent-proc", open_fake<FakePgServerKernel, PgServerKernel>(kernel_), linker_.linker()) {
    family_.set_sink(&sink_);
    std::string why_not;
    EXPECT_TRUE(family_.start(why_not)) << why_not;
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

// A worker started after the last scan opens a connection: the linker sees the socket, but the family does not know
// the worker yet, so the backend's statements wait for the rescan that lists both; a scan that read /proc before
// they existed does not decide it, and its statements wait one rescan more.
TEST_F(PgServerFamilyTest, StatementsOfANewConnectionAreHeldUntilARescanMapsIt) {
  rescan({kSync}, {});
  linker_.connect(101, kFed.key.pid);
  kernel_->statement(101, "SELECT 1 FROM device_inbox");
  family_.poll();
  kernel_->statement(101, "DELETE FROM device_inbox WHERE stream_id < 5");
  family_.poll();

  EXPECT_TRUE(sink_.queries.empty());
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 0u);
  // Looked up once between rescans, however many polls bring its statements.
  EXPECT_EQ(linker_.asked(), (std::vector<std::vector<int>>{{101}}));
  EXPECT_FALSE(family_.backend_decisions().count(101));

  rescan({kSync}, {});
  EXPECT_TRUE(sink_.queries.empty());
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 0u);

  rescan({kSync, kFed}, {backend(101)});
  ASSERT_EQ(sink_.queries.size(), 2u);
  EXPECT_EQ(sink_.queries[0].worker, kFedLabels);
  EXPECT_EQ(sink_.queries[0].verb, "SELECT");
  EXPECT_EQ(sink_.queries[1].worker, kFedLabels);
  EXPECT_EQ(sink_.queries[1].verb, "DELETE");
  EXPECT_EQ(statements(kFedLabels, "SELECT"), 1u);
  EXPECT_EQ(statements(kFedLabels, "DELETE"), 1u);
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 0u);
  EXPECT_EQ(family_.backend_decisions().at(101), kFedLabels);
}

// A short connection of a client no scan ever lists (it came and went between two scans): its statements are held
// through one rescan (its backend may have been forked after that scan read /proc), then counted as "other".
TEST_F(PgServerFamilyTest, HeldStatementsOfABackendNoScanListsAreOtherAfterTheSecondRescan) {
  rescan({kSync}, {});
  kernel_->statement(102, "SELECT count(*) FROM events");
  kernel_->statement(102, "VACUUM events");
  family_.poll();

  rescan({kSync}, {});
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 0u);
  EXPECT_EQ(statements(kOtherWorker, "other"), 0u);

  rescan({kSync}, {});
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 1u);
  EXPECT_EQ(statements(kOtherWorker, "other"), 1u);
  EXPECT_TRUE(sink_.queries.empty());
  EXPECT_FALSE(family_.backend_decisions().count(102));

  rescan({kSync}, {});
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 1u) << "counted once";
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
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 1u);
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

  // Both are in the kernel's per-backend totals all the same.
  family_.poll();
  EXPECT_EQ(totals(kSyncLabels).lock_waits.count, 1u);
  EXPECT_EQ(totals(kSyncLabels).lock_waits.sum_ns, 40'000'000u);
  EXPECT_EQ(totals(kOtherWorker).lock_waits.count, 1u);
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

// A connection of a known worker is decided at its first statement, between two scans. If it ends before a scan lists
// it, the next scan lets it go like any exited backend (its kernel entry too), so that a later process with its PID
// is decided anew.
TEST_F(PgServerFamilyTest, BackendDecidedBetweenRescansIsLetGoWhenTheNextScanDoesNotListIt) {
  rescan({kSync}, {});
  linker_.connect(105, kSync.key.pid);
  kernel_->statement(105, "SELECT 1 FROM users");
  kernel_->commit(105);
  family_.poll();
  ASSERT_EQ(sink_.queries.size(), 1u);
  EXPECT_EQ(family_.backend_decisions().at(105), kSyncLabels);

  linker_.disconnect(105);
  rescan({kSync}, {});
  EXPECT_FALSE(family_.backend_decisions().count(105));
  EXPECT_FALSE(kernel_->has_backend(105));
  EXPECT_EQ(totals(kSyncLabels).commits, 1u);

  // The PID comes back as the backend of a psql session.
  rescan({kSync}, {backend(105)});
  EXPECT_EQ(family_.backend_decisions().at(105), kOtherWorker);
  kernel_->commit(105);
  family_.poll();
  EXPECT_EQ(totals(kSyncLabels).commits, 1u);
  EXPECT_EQ(totals(kOtherWorker).commits, 1u);
}

// A backend decided during a rescan's own drain may have been forked after that scan read /proc: not being listed
// does not make it gone yet.
TEST_F(PgServerFamilyTest, BackendDecidedDuringARescanIsNotLetGoByThatRescan) {
  rescan({kSync}, {});
  linker_.connect(106, kSync.key.pid);
  kernel_->statement(106, "SELECT 1 FROM users");
  rescan({kSync}, {});
  EXPECT_EQ(family_.backend_decisions().at(106), kSyncLabels);
  EXPECT_EQ(kernel_->count_calls("erase_backend 106"), 0u);
  ASSERT_EQ(sink_.queries.size(), 1u);

  rescan({kSync}, {backend(106)});
  EXPECT_EQ(family_.backend_decisions().at(106), kSyncLabels);
  EXPECT_EQ(kernel_->count_calls("erase_backend 106"), 0u);
}

// A backend's kernel counts wait until it is decided: they are never charged to "other" first and moved later.
TEST_F(PgServerFamilyTest, KernelTotalsOfAnUndecidedBackendWaitForItsDecision) {
  rescan({kSync}, {});
  linker_.connect(101, kFed.key.pid);  // a worker that started after the scan
  kernel_->commit(101);
  family_.poll();
  EXPECT_EQ(totals(kOtherWorker).commits, 0u);
  EXPECT_EQ(totals(kFedLabels).commits, 0u);

  rescan({kSync, kFed}, {backend(101)});
  family_.poll();
  EXPECT_EQ(totals(kFedLabels).commits, 1u);
  EXPECT_EQ(totals(kOtherWorker).commits, 0u);
}

// At most 1 << 16 statements wait for a decision (pgserver_family.cpp's kMaxPending); beyond that they are counted
// as "other" at once rather than growing the agent without bound.
TEST_F(PgServerFamilyTest, StatementsBeyondTheHoldingCapAreOtherAtOnce) {
  constexpr std::size_t kCap = 1 << 16;
  rescan({kSync}, {});
  for (std::size_t i = 0; i < kCap + 5; ++i) kernel_->statement(105, "SELECT 1");
  family_.poll();
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), 5u);

  rescan({kSync}, {});
  rescan({kSync}, {});
  EXPECT_EQ(statements(kOtherWorker, "SELECT"), kCap + 5);
  EXPECT_TRUE(sink_.queries.empty());
}

}  // namespace
}  // namespace sp::agent::test
