// Block I/O end to end through the agent: a worker's O_DIRECT reads and writes are charged to it (via="self") with
// the workload's own byte counts; a query that must read from disk is charged to the worker whose backend read
// (via="postgres"); buffered writes flushed later by writeback threads are worker="other"; the device totals agree
// with the kernel's own /sys/block/<dev>/stat.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::sum_of;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

// The whole disk (not the partition) under a directory, e.g. "vda".
std::string disk_of(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return {};
  std::string sys = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  std::error_code ec;
  auto real = std::filesystem::canonical(sys, ec);
  if (ec) return {};
  // A partition's sysfs directory has a "partition" file; its parent is the disk.
  if (std::filesystem::exists(real / "partition")) real = real.parent_path();
  return real.filename();
}

struct DiskStat {
  double reads = 0, read_bytes = 0, writes = 0, write_bytes = 0;
};

DiskStat disk_stat(const std::string& disk) {
  std::istringstream in(sp::test::read_text("/sys/block/" + disk + "/stat"));
  double f[11] = {};
  for (double& v : f) in >> v;
  return {f[0], f[2] * 512, f[4], f[6] * 512};
}

// The agent's metrics and the kernel's disk statistics at a quiet moment: no request completed on the disk between
// two readings of its statistics, and in between the agent finished two scans and two polls of its probes after the
// first reading (a scan tells whose each process's requests are; the first round may have begun before the reading,
// the second began after it, so it saw every request the statistics count). Other programs may use the disk: retried.
struct QuietSnapshot {
  std::string metrics;
  DiskStat stat;
  bool quiet = false;
};

QuietSnapshot quiet_snapshot(const sp::test::AgentProcess& agent, const std::string& disk) {
  QuietSnapshot snap;
  for (int attempt = 0; attempt < 20; ++attempt) {
    DiskStat s1 = disk_stat(disk);
    std::this_thread::sleep_for(300ms);  // a window of quiet: not stretched (journal commits every 5 s would fill it)
    const bool polled = agent.wait_rounds(2);
    snap.metrics = agent.metrics();
    snap.stat = disk_stat(disk);
    if (polled && s1.reads == snap.stat.reads && s1.writes == snap.stat.writes) {
      snap.quiet = true;
      break;
    }
  }
  return snap;
}

class BlockIoAgentIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
    // Media on a real disk: /var/tmp (tmpfs /tmp would do no block I/O).
    dir_ = "/var/tmp/sp-blockio-it." + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    disk_ = disk_of(dir_);
    ASSERT_FALSE(disk_.empty()) << dir_ << " is not on a block device";
    agent_ = sp::test::AgentProcess(dir_);
    ASSERT_TRUE(agent_.running()) << agent_.log();
  }
  void TearDown() override {
    if (agent_.port() > 0) {
      EXPECT_TRUE(agent_.stop()) << agent_.log();
    }
    std::filesystem::remove_all(dir_);
  }
  std::string metrics() const { return agent_.metrics(); }

  std::string dir_, disk_;
  sp::test::AgentProcess agent_;
};

}  // namespace

TEST_F(BlockIoAgentIT, DirectIoIsChargedToTheWorkerWithItsOwnByteCounts) {
  WorkloadSpec spec;
  spec.name = "io_direct";
  spec.duration_s = 3;
  spec.extra_args = {"--gc-schedule", "none", "--io-rate", "10", "--io-bytes", "1048576", "--direct-io",
                     "--media-dir", dir_ + "/media", "--start-gate", dir_ + "/gate"};
  Workload w(spec, dir_);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(metrics(), "synapse_profiler_worker_info", {{"worker", "io_direct"}}).has_value();
      },
      10s));
  auto [before, stat_before, quiet_before] = quiet_snapshot(agent_, disk_);
  std::ofstream(dir_ + "/gate").put('\n');
  auto st = w.process().wait(30s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w.log_path());
  auto [after, stat_after, quiet_after] = quiet_snapshot(agent_, disk_);

  double read_bytes = 0, write_bytes = 0;
  for (const auto& r : sp::test::truth_of_type(sp::test::read_truth(w.truth_path()), "io")) {
    (*r.text("op") == "read" ? read_bytes : write_bytes) += static_cast<double>(*r.integer("bytes"));
  }
  ASSERT_GT(read_bytes, 0);
  auto delta = [&, &after = after, &before = before](const std::map<std::string, std::string>& f,
                                                     const std::string& name) {
    return sum_of(after, name, f) - sum_of(before, name, f);
  };
  std::map<std::string, std::string> self = {{"worker", "io_direct"}, {"device", disk_}, {"via", "self"}};
  auto with_op = [](std::map<std::string, std::string> f, const std::string& op) {
    f["op"] = op;
    return f;
  };
  // The kernel skips a probe run that would nest inside another BPF program on the same CPU (an interrupt arriving
  // inside a handler) and counts it; the agent exports that count. With none, every comparison below is exact; with
  // some, each skipped run can hide at most one request, and the test says so.
  const double misses = delta({{"probe", "block_io"}}, "synapse_profiler_hook_misses_total");
  auto expect_exact = [&](double measured, double truth, double per_miss, const char* what) {
    if (misses == 0) {
      EXPECT_EQ(measured, truth) << what;
    } else {
      std::cout << "note: " << misses << " block I/O probe runs skipped by the kernel during " << what << "\n";
      EXPECT_LE(measured, truth) << what;
      EXPECT_GE(measured, truth - misses * per_miss) << what;
    }
  };
  // O_DIRECT reads go straight to the device: every byte the workload read, plus what the file system reads for it
  // when it creates the files (a bitmap or inode block not in the cache: a few 4 KiB blocks, never a whole request).
  const double worker_reads = delta(with_op(self, "read"), "synapse_profiler_disk_io_bytes_total");
  sp::test::record_compared("io_direct.read_bytes", worker_reads, read_bytes);
  if (misses == 0) {
    EXPECT_GE(worker_reads, read_bytes) << "the worker's reads";
  }
  EXPECT_LE(worker_reads, read_bytes + (64 << 10)) << "the worker's reads";
  // O_DIRECT writes are synchronous; the file system adds a little metadata the worker's fsync writes too.
  double written = delta(with_op(self, "write_sync"), "synapse_profiler_disk_io_bytes_total");
  sp::test::record_compared("io_direct.write_sync_bytes", written, write_bytes);
  EXPECT_GE(written, write_bytes);
  EXPECT_LE(written, write_bytes + (4 << 20));
  // Every read on the disk in the interval, ours or not, is in the exported series; the kernel counts the same. The
  // comparison needs two moments when the disk was idle (a machine busy with other work may never give them: then
  // it is reported, not failed; the worker's own counts above are exact either way).
  if (quiet_before && quiet_after) {
    std::map<std::string, std::string> disk_reads = {{"device", disk_}, {"op", "read"}};
    expect_exact(delta(disk_reads, "synapse_profiler_disk_io_bytes_total"),
                 stat_after.read_bytes - stat_before.read_bytes, 1 << 20, "the disk's read bytes");
    std::map<std::string, std::string> device_stage = disk_reads;
    device_stage["stage"] = "device";
    expect_exact(delta(device_stage, "synapse_profiler_disk_io_seconds_count"), stat_after.reads - stat_before.reads, 1,
                 "the disk's read requests");
  } else {
    std::cout << "note: " << disk_ << " was never idle for 600 ms: device-wide comparison with /sys/block/" << disk_
              << "/stat not made\n";
  }
  // Queue and device time both recorded for each request.
  std::map<std::string, std::string> queue_stage = with_op(self, "read");
  queue_stage["stage"] = "queue";
  EXPECT_GT(delta(queue_stage, "synapse_profiler_disk_io_seconds_count"), 0);
}

// A worker's requests from before the scan that finds it are still its own: the kernel keeps the counts of a process
// no scan has seen yet until a scan says whose they are (folding them into "other" at once would charge a newly
// started worker's first seconds to nobody). Here the agent scans every 3 s and the worker starts reading and writing
// at once, so a good part of its I/O completes before it is discovered.
TEST_F(BlockIoAgentIT, RequestsBeforeTheWorkerIsDiscoveredAreStillItsOwn) {
  EXPECT_TRUE(agent_.stop()) << agent_.log();
  agent_ = sp::test::AgentProcess(dir_, "3s");
  ASSERT_TRUE(agent_.running()) << agent_.log();
  const std::string before = metrics();
  WorkloadSpec spec;
  spec.name = "io_early";
  spec.duration_s = 5;
  std::ofstream(dir_ + "/gate").put('\n');  // open from the start: I/O begins as soon as the worker is up
  spec.extra_args = {"--gc-schedule", "none", "--io-rate", "10", "--io-bytes", "1048576", "--direct-io",
                     "--media-dir", dir_ + "/media", "--start-gate", dir_ + "/gate"};
  Workload w(spec, dir_);
  auto st = w.process().wait(60s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w.log_path());
  auto [after, stat_after, quiet_after] = quiet_snapshot(agent_, disk_);
  const std::string log = agent_.log();
  ASSERT_NE(log.find("worker io_early"), std::string::npos) << "the worker was never discovered:\n" << log;

  double read_bytes = 0, write_bytes = 0;
  for (const auto& r : sp::test::truth_of_type(sp::test::read_truth(w.truth_path()), "io")) {
    (*r.text("op") == "read" ? read_bytes : write_bytes) += static_cast<double>(*r.integer("bytes"));
  }
  ASSERT_GT(read_bytes, 0);
  auto charged = [&, &after = after](const std::string& op) {
    std::map<std::string, std::string> f = {{"worker", "io_early"}, {"device", disk_}, {"via", "self"}, {"op", op}};
    return sum_of(after, "synapse_profiler_disk_io_bytes_total", f) -
           sum_of(before, "synapse_profiler_disk_io_bytes_total", f);
  };
  // Every O_DIRECT byte the worker moved is charged to it; reads may add what Python read from disk as it started.
  EXPECT_GE(charged("read"), read_bytes);
  EXPECT_LE(charged("read"), read_bytes + (64 << 20));
  EXPECT_GE(charged("write_sync"), write_bytes);
  EXPECT_LE(charged("write_sync"), write_bytes + (4 << 20));
}

TEST_F(BlockIoAgentIT, BufferedWritesFlushedByWritebackAreOther) {
  WorkloadSpec spec;
  spec.name = "io_buffered";
  spec.duration_s = 2;
  spec.extra_args = {"--gc-schedule", "none", "--io-rate", "0", "--start-gate", dir_ + "/gate"};
  Workload w(spec, dir_);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  std::this_thread::sleep_for(sp::test::scaled(1s));
  std::string before = metrics();
  // A process that is not a worker dirties 8 MiB of page cache without syncing; `sync` then has the kernel's
  // flusher threads write it back.
  std::string file = dir_ + "/buffered.bin";
  {
    std::ofstream out(file, std::ios::binary);
    std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 8; ++i) out << chunk;
  }
  sp::test::run_command({"/bin/sync"});
  std::this_thread::sleep_for(sp::test::scaled(1500ms));
  std::string after = metrics();
  double other_writes = sum_of(after, "synapse_profiler_disk_io_bytes_total", {{"worker", "other"}, {"device", disk_}}) -
                        sum_of(before, "synapse_profiler_disk_io_bytes_total", {{"worker", "other"}, {"device", disk_}});
  EXPECT_GE(other_writes, 8 << 20);
  // The worker's own start-up reads (Python modules not in the page cache) are its own; the writeback is not.
  double worker_io = sum_of(after, "synapse_profiler_disk_io_bytes_total", {{"worker", "io_buffered"}}) -
                     sum_of(before, "synapse_profiler_disk_io_bytes_total", {{"worker", "io_buffered"}});
  EXPECT_EQ(worker_io, 0) << "the idle worker did no I/O while the file was written back";
  std::ofstream(dir_ + "/gate").put('\n');
}

// A query that must read from disk (cold page cache, a table much larger than shared_buffers, which the test
// cluster keeps at 1 MB) is charged to the worker that sent it, through the backend serving it.
TEST_F(BlockIoAgentIT, ColdReadsOfABackendAreChargedToItsWorker) {
  auto pg = sp::test::test_postgres();
  if (!pg) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
  // ~40 MB table, written and checkpointed so that reading it later needs the disk once caches are dropped.
  const char* setup = R"py(
import psycopg2, sys
conn = psycopg2.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3], dbname=sys.argv[4])
conn.autocommit = True
cur = conn.cursor()
cur.execute("DROP TABLE IF EXISTS sp_cold_scan")
cur.execute("CREATE TABLE sp_cold_scan AS SELECT g, repeat('x', 400) AS pad FROM generate_series(1, 80000) g")
cur.execute("ALTER TABLE sp_cold_scan SET (parallel_workers = 0)")
cur.execute("CHECKPOINT")
cur.execute("SELECT pg_relation_size('sp_cold_scan')")
print(cur.fetchone()[0])
)py";
  std::string out = dir_ + "/setup.txt";
  sp::test::Process p({"/usr/bin/python3.11", "-c", setup, pg->host, std::to_string(pg->port), pg->user, pg->db},
                      out);
  auto ps = p.wait(60s);
  ASSERT_TRUE(ps && WIFEXITED(*ps) && WEXITSTATUS(*ps) == 0) << sp::test::read_text(out);
  double table_bytes = std::stod(sp::test::read_text(out));

  auto worker = [&](const std::string& name, bool scans) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 3;
    spec.use_db = true;
    spec.extra_args = {"--gc-schedule", "none", "--io-rate", "0", "--query-rate", "4", "--start-gate",
                       dir_ + "/gate"};
    if (scans) spec.extra_args.insert(spec.extra_args.end(), {"--scan-table", "public.sp_cold_scan"});
    return std::make_unique<Workload>(spec, dir_);
  };
  auto scanner = worker("io_scanner", true);
  auto bystander = worker("io_bystander", false);
  ASSERT_TRUE(scanner->wait_ready()) << sp::test::read_text(scanner->log_path());
  ASSERT_TRUE(bystander->wait_ready()) << sp::test::read_text(bystander->log_path());
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        std::string m = metrics();
        return sp::test::metric_value(m, "synapse_profiler_worker_info", {{"worker", "io_scanner"}}) &&
               sp::test::metric_value(m, "synapse_profiler_worker_info", {{"worker", "io_bystander"}});
      },
      10s));
  sp::test::run_command({"/bin/sync"});
  std::ofstream("/proc/sys/vm/drop_caches") << "1\n";
  std::this_thread::sleep_for(sp::test::scaled(1500ms));  // the rescan decides the new backends; one more poll
  std::string before = metrics();
  std::ofstream(dir_ + "/gate").put('\n');
  for (auto* w : {scanner.get(), bystander.get()}) {
    auto st = w->process().wait(30s);
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w->log_path());
  }
  std::this_thread::sleep_for(sp::test::scaled(1500ms));
  std::string after = metrics();
  auto reads = [&](const std::string& worker_name) {
    std::map<std::string, std::string> f = {{"worker", worker_name}, {"op", "read"}, {"via", "postgres"}};
    return sum_of(after, "synapse_profiler_disk_io_bytes_total", f) -
           sum_of(before, "synapse_profiler_disk_io_bytes_total", f);
  };
  // The first scan after the cache drop reads the whole table from disk; later scans may hit the cache. The table
  // has parallel_workers = 0: PostgreSQL's parallel workers are separate processes with no client socket whose reads
  // count as worker="other" (a known limit), and with them the backend itself read as little as a third of it.
  EXPECT_GE(reads("io_scanner"), 0.5 * table_bytes);
  EXPECT_LT(reads("io_bystander"), 0.1 * table_bytes);
}
