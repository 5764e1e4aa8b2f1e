// The block I/O probe alone, in both hook variants: O_DIRECT reads of a known size made by a child process are
// counted under that process, in the right operation, with exactly its bytes.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "bpf/blockio_probe.h"
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

INSTANTIATE_TEST_SUITE_P(Hooks, BlockIoProbeIT, ::testing::Values("tp_btf", "raw_tp"));
