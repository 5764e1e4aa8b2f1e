// The block I/O probe alone, in both hook variants: O_DIRECT reads of a known size made by a child process are
// counted under that process, in the right operation, with exactly its bytes.
#include <fcntl.h>
#include <unistd.h>

#include <sys/wait.h>

#include <filesystem>
#include <map>

#include "probes/blockio_probe.h"
#include "harness.h"

using namespace std::chrono_literals;

namespace {

class BlockIoProbeIT : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
    dir_ = "/var/tmp/sp-blockio-probe-it." + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

}  // namespace

TEST_P(BlockIoProbeIT, DirectReadsOfAChildAreCountedWithTheirBytes) {
  std::string file = dir_ + "/data.bin";
  auto w = sp::test::run_command({"/bin/dd", "if=/dev/urandom", "of=" + file, "bs=1M", "count=8", "oflag=direct",
                                  "status=none"});
  ASSERT_EQ(w.status, 0) << w.out;

  // The very same command once before the probe is loaded: dd's binary, libraries and whatever else it touches go
  // into the page cache (another test may just have dropped the caches), so that the measured run's only disk
  // reads are its O_DIRECT ones (O_DIRECT data is never cached, so the file itself is read from disk again).
  const std::vector<std::string> reader_argv = {"/bin/dd", "if=" + file, "of=/dev/null", "bs=1M", "iflag=direct",
                                                "status=none"};
  ASSERT_EQ(sp::test::run_command(reader_argv).status, 0);

  std::string error;
  auto probe = sp::bpf::BlockIoProbe::create(error, GetParam());
  ASSERT_TRUE(probe) << error;
  EXPECT_EQ(probe->hooks().rfind(GetParam(), 0), 0u) << probe->hooks();

  sp::test::Process reader(reader_argv, dir_ + "/dd.log");
  int pid = reader.pid();
  auto st = reader.wait(30s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(dir_ + "/dd.log");

  std::uint64_t read_bytes = 0, requests = 0, queue_samples = 0;
  for (const auto& [key, h] : probe->read()) {
    if (key.tgid != static_cast<__u32>(pid)) continue;
    EXPECT_NE(key.op, static_cast<__u32>(SP_IO_WRITE)) << "the reader wrote";
    if (key.op != SP_IO_READ) continue;
    read_bytes += h.bytes;
    requests += h.device_count;
    queue_samples += h.queue_count;
  }
  EXPECT_EQ(read_bytes, 8u << 20);
  EXPECT_GE(requests, 8u);  // the device may split 1 MiB reads
  EXPECT_EQ(queue_samples, requests);
}

// fsync: the cache flush a process asks for is a request of its own (seen at block_io_start in its context) that
// the block layer's flush machinery serves with a flush request issued by kblockd. The flush is the process's: as
// many flush requests under its PID as it called fdatasync() (each one's data write first, then the flush), with
// device time, and not a single one under kblockd.
TEST_P(BlockIoProbeIT, FsyncFlushesAreChargedToTheProcessThatAskedForThem) {
  constexpr int kSyncs = 20;
  const std::string file = dir_ + "/sync.bin";
  // Allocated and on disk before the probe: every fdatasync() below then has data to write and no metadata to
  // journal (an overwrite in place), so ext4 sends the flush itself rather than through a journal commit.
  ASSERT_EQ(sp::test::run_command({"/bin/dd", "if=/dev/zero", "of=" + file, "bs=4k", "count=1", "conv=fsync",
                                   "status=none"}).status, 0);
  std::string error;
  auto probe = sp::bpf::BlockIoProbe::create(error, GetParam());
  ASSERT_TRUE(probe) << error;

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    char block[4096] = {};
    for (int i = 0; i < kSyncs && fd >= 0; ++i) {
      block[0] = static_cast<char>(i);
      if (::pwrite(fd, block, sizeof block, 0) != static_cast<ssize_t>(sizeof block) || ::fdatasync(fd) != 0) _exit(1);
    }
    _exit(fd >= 0 ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  std::uint64_t flushes = 0, flush_queue = 0, writes = 0;
  std::map<std::uint32_t, std::uint64_t> flushes_of;  // every process's flushes: kblockd must have none
  for (const auto& [key, h] : probe->read()) {
    if (key.op == SP_IO_FLUSH) flushes_of[key.tgid] += h.device_count;
    if (key.tgid != static_cast<__u32>(child)) continue;
    if (key.op == SP_IO_FLUSH) {
      flushes += h.device_count;
      flush_queue += h.queue_count;
    }
    if (key.op == SP_IO_WRITE || key.op == SP_IO_WRITE_SYNC) writes += h.device_count;
  }
  EXPECT_EQ(flushes, static_cast<std::uint64_t>(kSyncs));
  EXPECT_EQ(flush_queue, flushes);
  EXPECT_GE(writes, static_cast<std::uint64_t>(kSyncs));
  EXPECT_GT(probe->stat(SP_IO_STAT_FLUSH_MACHINERY), 0u);
  for (const auto& [tgid, n] : flushes_of) {
    const std::string comm = sp::test::read_text("/proc/" + std::to_string(tgid) + "/comm");
    EXPECT_EQ(comm.find("kworker"), std::string::npos) << n << " flushes charged to " << tgid << " " << comm;
  }
}

INSTANTIATE_TEST_SUITE_P(Hooks, BlockIoProbeIT, ::testing::Values("tp_btf", "raw_tp"));
