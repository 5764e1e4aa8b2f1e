// BlockIoFamily against a fake kernel (family_fakes.h) and a fake /sys: who each process's requests are charged to
// around a rescan (the order BlockIoFamily::update keeps), what is folded into "other", what reaches the sink, and
// device names and --devices.
#include "agent/families/blockio_family.h"

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "family_fakes.h"

namespace sp::agent::test {
namespace {

constexpr std::uint32_t dev_of(std::uint32_t major, std::uint32_t minor) { return major << 20 | minor; }
constexpr std::uint32_t kSda = dev_of(8, 0);          // named "sda" by the fake /sys
constexpr std::uint32_t kNvme = dev_of(259, 0);       // named "nvme0n1"
constexpr std::uint32_t kNoUevent = dev_of(252, 16);  // no uevent: named "252:16"

const WorkerInfo kSync = worker(200, "synchrotron1");
const WorkerLabels kSyncLabels = labels_of(kSync);
constexpr int kWriteback = 300;  // a kworker: nobody we profile

class BlockIoFamilyTest : public ::testing::Test {
 protected:
  BlockIoFamilyTest() {
    write_uevent("8:0", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n");
    write_uevent("259:0", "MAJOR=259\nMINOR=0\nDEVNAME=nvme0n1\nDEVTYPE=disk\n");
  }

  // `backends`: whose decisions the family asks (the scripted ones by default).
  void start(std::vector<std::string> device_globs = {}, const BackendDecisions* backends = nullptr) {
    family_ = std::make_unique<BlockIoFamily>(sys_.path(), std::move(device_globs),
                                              open_fake<FakeBlockIoKernel, BlockIoKernel>(kernel_),
                                              backends ? backends : &decisions_);
    family_->set_sink(&sink_);
    std::string why_not;
    ASSERT_TRUE(family_->start(why_not)) << why_not;
  }

  // One discovery scan; with `postgres`, that family is updated first, as in the agent's list.
  void rescan(std::vector<WorkerInfo> workers, const std::vector<PostgresProcess>& backends = {},
              PgServerFamily* postgres = nullptr) {
    auto [result, diff] = scans_.next(std::move(workers), backends);
    if (postgres) postgres->update(result, diff);
    family_->update(result, diff);
  }

  IoSeries series(const WorkerLabels& w, const std::string& device, std::uint32_t op, const std::string& via) const {
    const auto snap = family_->snapshot();
    auto it = snap.series.find({w, IoKey{device, io_op_name(op), via}});
    return it == snap.series.end() ? IoSeries{} : it->second;
  }
  std::uint64_t requests(const WorkerLabels& w, const std::string& device, std::uint32_t op,
                         const std::string& via) const {
    return series(w, device, op, via).device.count;
  }

  TempDir sys_;
  FakeBlockIoKernel* kernel_ = nullptr;
  ScriptedDecisions decisions_;
  CapturingSink sink_;
  Scans scans_;
  std::unique_ptr<BlockIoFamily> family_;

 private:
  void write_uevent(const std::string& maj_min, const std::string& text) {
    const auto dir = std::filesystem::path(sys_.path()) / "dev" / "block" / maj_min;
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "uevent") << text;
  }
};

// A worker's first requests (reading its modules at start-up) come before any scan finds it: their counts stay in
// the kernel and are its own once a scan does, and so are the records still in the ring then. (Records a poll drained
// before were nobody's yet: the sink never sees them.)
TEST_F(BlockIoFamilyTest, WorkerFoundByThisScanOwnsWhatItDidBeforeTheScan) {
  start();
  rescan({});
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  family_->poll();
  EXPECT_TRUE(sink_.io_requests.empty());
  EXPECT_TRUE(kernel_->has_entry(kSync.host_pid, kSda, SP_IO_READ));
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_READ, ""), 0u);

  const auto second = kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  rescan({kSync});
  ASSERT_EQ(sink_.io_requests.size(), 1u);
  const IoEvent& e = sink_.io_requests[0];
  EXPECT_EQ(e.worker, kSyncLabels);
  EXPECT_EQ(e.via, "self");
  EXPECT_EQ(e.device, "sda");
  EXPECT_EQ(e.op, "read");
  EXPECT_EQ(e.bytes, 4096u);
  EXPECT_EQ(e.start_ns, second.start_ns);
  EXPECT_EQ(e.issue_ns, second.issue_ns);
  EXPECT_EQ(e.complete_ns, second.complete_ns);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 2u);
  EXPECT_EQ(series(kSyncLabels, "sda", SP_IO_READ, "self").bytes, 8192u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_READ, ""), 0u);
  // A live process's counters are cumulative in the kernel: read, never taken.
  EXPECT_FALSE(kernel_->took_from(kSync.host_pid));
}

TEST_F(BlockIoFamilyTest, GoneProcessHasItsEntriesTakenAsFinalValuesAndRetired) {
  start();
  rescan({kSync});
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  family_->poll();
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 1u);

  // Its last requests complete after the last poll; then it exits.
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  kernel_->complete(kSync.host_pid, kSda, SP_IO_WRITE, 8192);
  rescan({});
  EXPECT_TRUE(kernel_->took_from(kSync.host_pid));
  EXPECT_FALSE(kernel_->has_entry(kSync.host_pid, kSda, SP_IO_READ));
  EXPECT_FALSE(kernel_->has_entry(kSync.host_pid, kSda, SP_IO_WRITE));
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 2u);
  EXPECT_EQ(series(kSyncLabels, "sda", SP_IO_READ, "self").bytes, 8192u);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_WRITE, "self"), 1u);
  EXPECT_EQ(sink_.io_requests.size(), 3u) << "its last records were drained for it before it was let go";
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_READ, ""), 0u);

  // The PID is reused by a process we do not profile: none of it is charged to the worker.
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 512);
  rescan({});
  family_->poll();
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 2u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_READ, ""), 1u);
  EXPECT_EQ(sink_.io_requests.size(), 3u);
}

// Writeback, other programs, and backends postgres decided serve nobody we profile: folded into "other" at the
// rescan, their kernel entries freed, and until the next rescan their new requests are folded at every poll.
TEST_F(BlockIoFamilyTest, UnknownProcessesAreFoldedIntoOtherAndLeaveTheKernel) {
  start();
  decisions_.decided[401] = kOtherWorker;
  rescan({kSync});
  kernel_->complete(kWriteback, kSda, SP_IO_WRITE, 65536);
  kernel_->complete(401, kSda, SP_IO_READ, 8192);
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  rescan({kSync});

  EXPECT_FALSE(kernel_->has_entry(kWriteback, kSda, SP_IO_WRITE));
  EXPECT_FALSE(kernel_->has_entry(401, kSda, SP_IO_READ));
  EXPECT_TRUE(kernel_->has_entry(kSync.host_pid, kSda, SP_IO_READ));
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_WRITE, ""), 1u);
  EXPECT_EQ(series(kOtherWorker, "sda", SP_IO_WRITE, "").bytes, 65536u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_READ, ""), 1u);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 1u);
  ASSERT_EQ(sink_.io_requests.size(), 1u);
  EXPECT_EQ(sink_.io_requests[0].worker, kSyncLabels);

  kernel_->complete(kWriteback, kSda, SP_IO_WRITE, 4096);
  family_->poll();
  EXPECT_FALSE(kernel_->has_entry(kWriteback, kSda, SP_IO_WRITE));
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_WRITE, ""), 2u);
  EXPECT_EQ(series(kOtherWorker, "sda", SP_IO_WRITE, "").bytes, 65536u + 4096u);
  EXPECT_EQ(sink_.io_requests.size(), 1u);
}

// A backend postgres has not decided yet may serve a worker: its counts wait in the kernel, neither "other" nor
// anybody's, until it is decided; then they are the worker's, via postgres.
TEST_F(BlockIoFamilyTest, BackendsUndecidedByPostgresKeepTheirEntriesUntilDecided) {
  start();
  decisions_.undecided = {400};
  rescan({kSync});
  kernel_->complete(400, kSda, SP_IO_READ, 8192);
  rescan({kSync});
  family_->poll();
  EXPECT_TRUE(kernel_->has_entry(400, kSda, SP_IO_READ));
  EXPECT_FALSE(kernel_->took_from(400));
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_READ, ""), 0u);
  EXPECT_TRUE(sink_.io_requests.empty());

  decisions_.undecided.clear();
  decisions_.decided[400] = kSyncLabels;
  kernel_->complete(400, kSda, SP_IO_READ, 8192);
  family_->poll();
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "postgres"), 2u);
  EXPECT_EQ(series(kSyncLabels, "sda", SP_IO_READ, "postgres").bytes, 16384u);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 0u);
  ASSERT_EQ(sink_.io_requests.size(), 1u);
  EXPECT_EQ(sink_.io_requests[0].worker, kSyncLabels);
  EXPECT_EQ(sink_.io_requests[0].via, "postgres");
  EXPECT_TRUE(kernel_->has_entry(400, kSda, SP_IO_READ));
}

// Backends exit between the last poll and a rescan, and the postgres family (first in the agent's list) lets them go
// before block I/O's update runs. What they did since that poll is their worker's all the same: 400's last request
// (its earlier ones were polled), and 402's only one.
TEST_F(BlockIoFamilyTest, WhatBackendsDidBeforeTheyExitedStaysTheirWorkers) {
  start();
  decisions_.decided = {{400, kSyncLabels}, {402, kSyncLabels}};
  rescan({kSync});
  kernel_->complete(400, kSda, SP_IO_READ, 4096);
  family_->poll();
  kernel_->complete(400, kSda, SP_IO_READ, 4096);
  kernel_->complete(402, kSda, SP_IO_WRITE, 8192);
  decisions_.decided.clear();
  rescan({kSync});

  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "postgres"), 2u);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_WRITE, "postgres"), 1u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_WRITE, ""), 0u);
  EXPECT_FALSE(kernel_->has_entry(400, kSda, SP_IO_READ));
  EXPECT_FALSE(kernel_->has_entry(402, kSda, SP_IO_WRITE));
  ASSERT_EQ(sink_.io_requests.size(), 3u);
  for (const auto& e : sink_.io_requests) EXPECT_EQ(e.via, "postgres");

  // Let go for good: a later process with one of their PIDs is nobody's.
  family_->poll();
  kernel_->complete(402, kSda, SP_IO_WRITE, 512);
  rescan({kSync});
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_WRITE, "postgres"), 1u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_WRITE, ""), 1u);
  EXPECT_EQ(sink_.io_requests.size(), 3u);
}

// --devices nvme*: requests of other devices, and requests of nobody we profile, never reach the sink; the series
// show the selected devices only.
TEST_F(BlockIoFamilyTest, OnlyOwnersRequestsOfSelectedDevicesReachTheSink) {
  start({"nvme*"});
  rescan({kSync});
  kernel_->complete(kSync.host_pid, kNvme, SP_IO_WRITE_SYNC, 4096);
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  kernel_->complete(kWriteback, kNvme, SP_IO_WRITE, 4096);
  family_->poll();
  ASSERT_EQ(sink_.io_requests.size(), 1u);
  EXPECT_EQ(sink_.io_requests[0].device, "nvme0n1");
  EXPECT_EQ(sink_.io_requests[0].op, "write_sync");
  EXPECT_EQ(sink_.io_requests[0].worker, kSyncLabels);

  rescan({kSync});
  std::set<std::pair<WorkerLabels, IoKey>> keys;
  for (const auto& [key, s] : family_->snapshot().series) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::pair<WorkerLabels, IoKey>>{{kSyncLabels, {"nvme0n1", "write_sync", "self"}},
                                                            {kOtherWorker, {"nvme0n1", "write", ""}}}));
}

TEST_F(BlockIoFamilyTest, DevicesAreNamedFromSysElseByMajorMinor) {
  start();
  rescan({kSync});
  for (std::uint32_t dev : {kSda, kNvme, kNoUevent}) kernel_->complete(kSync.host_pid, dev, SP_IO_READ, 512);
  family_->poll();
  std::vector<std::string> devices;
  for (const auto& e : sink_.io_requests) devices.push_back(e.device);
  EXPECT_EQ(devices, (std::vector<std::string>{"sda", "nvme0n1", "252:16"}));
  for (const auto& device : devices) EXPECT_EQ(requests(kSyncLabels, device, SP_IO_READ, "self"), 1u) << device;
}

// A worker that restarts has a new PID and fresh kernel counters; its series go on from where they were.
TEST_F(BlockIoFamilyTest, CountsSurviveAWorkersRestart) {
  start();
  rescan({kSync});
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  kernel_->complete(kSync.host_pid, kSda, SP_IO_READ, 4096);
  family_->poll();
  rescan({});
  const WorkerInfo restarted = worker(201, kSync.worker_name);
  rescan({restarted});
  for (int i = 0; i < 3; ++i) kernel_->complete(restarted.host_pid, kSda, SP_IO_READ, 4096);
  family_->poll();
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 5u);
  EXPECT_EQ(series(kSyncLabels, "sda", SP_IO_READ, "self").bytes, 5u * 4096);

  // --forget-after drops what is retired; the running process keeps what it reported.
  family_->forget_worker(kSyncLabels);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_READ, "self"), 3u);
}

// Wired as the agent wires them: the postgres family decides, block I/O charges a backend's requests to the worker
// it serves, and keeps them there when the backend exits.
TEST_F(BlockIoFamilyTest, BackendServingAWorkerIsChargedViaPostgres) {
  FakePgServerKernel* pg_kernel = nullptr;
  ScriptedLinker linker;
  PgServerFamily postgres("/nonexistent-proc", open_fake<FakePgServerKernel, PgServerKernel>(pg_kernel),
                          linker.linker());
  std::string why_not;
  ASSERT_TRUE(postgres.start(why_not)) << why_not;
  start({}, &postgres);
  linker.connect(400, kSync.host_pid);
  rescan({kSync}, {backend(400), backend(401)}, &postgres);

  kernel_->complete(400, kSda, SP_IO_WRITE_SYNC, 8192);
  kernel_->complete(401, kSda, SP_IO_WRITE_SYNC, 8192);
  family_->poll();
  ASSERT_EQ(sink_.io_requests.size(), 1u);
  EXPECT_EQ(sink_.io_requests[0].worker, kSyncLabels);
  EXPECT_EQ(sink_.io_requests[0].via, "postgres");

  rescan({kSync}, {backend(400), backend(401)}, &postgres);
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_WRITE_SYNC, "postgres"), 1u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_WRITE_SYNC, ""), 1u);
  EXPECT_FALSE(kernel_->has_entry(401, kSda, SP_IO_WRITE_SYNC));

  kernel_->complete(400, kSda, SP_IO_WRITE_SYNC, 8192);
  family_->poll();
  rescan({kSync}, {backend(401)}, &postgres);
  EXPECT_FALSE(kernel_->has_entry(400, kSda, SP_IO_WRITE_SYNC));
  EXPECT_EQ(requests(kSyncLabels, "sda", SP_IO_WRITE_SYNC, "postgres"), 2u);
  EXPECT_EQ(requests(kOtherWorker, "sda", SP_IO_WRITE_SYNC, ""), 1u);
}

}  // namespace
}  // namespace sp::agent::test
