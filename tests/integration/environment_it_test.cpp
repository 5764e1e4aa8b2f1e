// A bad environment at the binary level, each set up for the agent alone in a private mount namespace: no kernel BTF
// and a port already in use are one error line that says what is missing and how to fix it, a non-zero exit, no
// port left open and no BPF program of ours left loaded. tracefs (and debugfs) not mounted is no error at all: no
// probe depends on them (tp_btf/raw_tp, and uprobes through the uprobe PMU), so the agent attaches and counts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "harness.h"

using namespace std::chrono_literals;

namespace {

// `script` runs as root in a private mount namespace, then execs the agent with `args` ("$@").
std::vector<std::string> in_private_mounts(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                                   script + " && exec \"$0\" \"$@\"", SP_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

class EnvironmentIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
    dir_ = sp::test::make_temp_dir("sp-env-it");
  }
  // After a failed start: nothing listens on the port, no program of ours is left without an owner (the kernel frees
  // an exited process's programs shortly after; another agent on the machine may just have exited too).
  void expect_nothing_left(int port) {
    EXPECT_FALSE(sp::test::port_listening(port));
    expect_no_orphaned_programs();
  }
  static void expect_no_orphaned_programs() {
    int n = -1;
    EXPECT_TRUE(sp::test::wait_for([&] { return (n = sp::test::our_bpf_programs(/*orphaned_only=*/true)) == 0; }, 5s))
        << n << " programs of ours held by no process";
  }
  std::string dir_;
};

}  // namespace

TEST_F(EnvironmentIT, NoKernelBtfIsOneLineAndAnError) {
  const int port = sp::test::free_port();
  // An empty tmpfs over /sys/kernel/btf: libbpf finds no vmlinux BTF (there is no vmlinux image in /boot or
  // /lib/modules on these machines either; the script checks).
  auto r = sp::test::run_command(in_private_mounts(
      "mount -t tmpfs none /sys/kernel/btf && ! ls /boot/vmlinux-* /lib/modules/*/vmlinux* "
      "/usr/lib/debug/boot/vmlinux-* >/dev/null 2>&1",
      {"run", "--listen", "127.0.0.1:" + std::to_string(port), "--quiet"}));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("no kernel BTF (/sys/kernel/btf/vmlinux)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CONFIG_DEBUG_INFO_BTF=y"), std::string::npos) << r.out;
  EXPECT_EQ(lines(r.out), 1u) << "one line: " << r.out;
  expect_nothing_left(port);
  // record says the same.
  auto rec = sp::test::run_command(in_private_mounts(
      "mount -t tmpfs none /sys/kernel/btf",
      {"record", "--output", dir_ + "/rec", "--duration", "1s", "--quiet"}));
  EXPECT_EQ(rec.status, 1) << rec.out;
  EXPECT_NE(rec.out.find("no kernel BTF"), std::string::npos) << rec.out;
}

TEST_F(EnvironmentIT, PortInUseIsOneLineAndAnError) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  auto r = sp::test::run_command({SP_BINARY, "run", "--listen", "127.0.0.1:" + std::to_string(port), "--quiet"});
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("already in use? Choose another with --listen"), std::string::npos) << r.out;
  EXPECT_EQ(lines(r.out), 1u) << "one line: " << r.out;
  expect_no_orphaned_programs();
  close(fd);
}

TEST_F(EnvironmentIT, WithoutTracefsOrDebugfsEverythingStillWorks) {
  sp::test::WorkloadSpec spec;
  spec.name = "env_worker";
  spec.duration_s = 180;
  spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "0"};
  sp::test::Workload w(spec, dir_);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  const int port = sp::test::free_port();
  const std::string log = dir_ + "/agent.log";
  // Unmount whatever is there (both may be absent already), then make sure neither is mounted anywhere.
  sp::test::Process agent(
      in_private_mounts("for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do "
                        "umount -l $m 2>/dev/null; done; ! grep -qE ' (tracefs|debugfs) ' /proc/self/mounts",
                        {"run", "--listen", "127.0.0.1:" + std::to_string(port), "--rescan-interval", "500ms"}),
      log);
  // Ready once the first scan has attached to every Synapse process on the machine (dozens, with other test runs).
  ASSERT_TRUE(sp::test::wait_for([&] { return sp::test::http_get(port, "/readyz").has_value(); }, 120s))
      << sp::test::read_text(log);
  EXPECT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(sp::test::http_get(port, "/metrics").value_or(""),
                                      "synapse_profiler_gc_pause_seconds_count",
                                      {{"worker", "env_worker"}, {"generation", "0"}})
                   .value_or(0) > 3;
      },
      60s))
      << sp::test::read_text(log);
  const std::string text = sp::test::read_text(log);
  EXPECT_EQ(text.find("unavailable"), std::string::npos) << "every family loads: " << text;
  auto st = agent.stop(SIGTERM, 60s);
  EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(log);
}
