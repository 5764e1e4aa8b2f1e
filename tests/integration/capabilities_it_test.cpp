// The capabilities the Kubernetes manifests grant are enough, and the one they rely on is needed: the agent, started
// with a bounding set of exactly CAP_SYS_ADMIN + CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH (what k8s/ adds after dropping
// ALL; the last one is measured by the simulated-pod test, sim_pod_it_test.cpp), attaches every
// family and counts a worker's GC pauses; with CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE instead (no CAP_SYS_ADMIN) the
// tracepoint families still load but the uprobe-based GC probe cannot attach, and says so.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "harness.h"

using namespace std::chrono_literals;

namespace {

// The binary under setpriv with the given bounding set and no inheritable capabilities: as uid 0 the process then has
// exactly the bounding set, as in a container that drops ALL and adds those. `as_nobody` also makes it uid/gid 65534.
std::vector<std::string> with_caps(const std::string& bounding, std::vector<std::string> args, bool as_nobody = false) {
  std::vector<std::string> argv = {"/usr/bin/setpriv"};
  if (as_nobody) argv.insert(argv.end(), {"--reuid", "65534", "--regid", "65534", "--clear-groups"});
  argv.insert(argv.end(), {"--bounding-set", bounding, "--inh-caps", "-all", SP_BINARY});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

sp::test::Process agent_with_caps(const std::string& dir, const std::string& bounding, int port) {
  return sp::test::Process(
      with_caps(bounding, {"run", "--listen", "127.0.0.1:" + std::to_string(port), "--rescan-interval", "500ms"}),
      dir + "/agent-" + bounding + ".log");
}

}  // namespace

TEST(CapabilitiesIT, TheManifestsCapabilitiesAreEnoughAndSysAdminIsNeeded) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-caps-it");
  sp::test::WorkloadSpec spec;
  spec.name = "caps_worker";
  spec.duration_s = 60;
  spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "0"};
  sp::test::Workload w(spec, dir);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());

  auto run_with = [&](const std::string& bounding) {
    const int port = sp::test::free_port();
    auto agent = agent_with_caps(dir, bounding, port);
    EXPECT_TRUE(sp::test::wait_for([&] { return sp::test::http_get(port, "/readyz").has_value(); }, 10s))
        << sp::test::read_text(dir + "/agent-" + bounding + ".log");
    std::this_thread::sleep_for(1500ms);  // a few rescans and collections
    std::string m = sp::test::http_get(port, "/metrics").value_or("");
    agent.stop(SIGTERM);
    return std::make_pair(m, sp::test::read_text(dir + "/agent-" + bounding + ".log"));
  };

  auto [enough, enough_log] = run_with("-all,+sys_admin,+sys_ptrace,+dac_read_search");
  EXPECT_EQ(sp::test::metric_value(enough, "synapse_profiler_probe_attached", {{"worker", "caps_worker"}, {"probe", "gc"}}),
            1.0)
      << enough_log;
  EXPECT_GT(sp::test::metric_value(enough, "synapse_profiler_gc_pause_seconds_count",
                                   {{"worker", "caps_worker"}, {"generation", "0"}})
                .value_or(0),
            0)
      << enough_log;
  EXPECT_EQ(enough_log.find("unavailable"), std::string::npos) << "every family loads: " << enough_log;

  // doctor agrees: with the manifests' set every needed check passes.
  auto doctor = sp::test::run_command(with_caps("-all,+sys_admin,+sys_ptrace,+dac_read_search", {"doctor"}));
  EXPECT_EQ(doctor.status, 0) << doctor.out;
  EXPECT_NE(doctor.out.find("implied by CAP_SYS_ADMIN"), std::string::npos) << doctor.out;

  auto [without, without_log] = run_with("-all,+bpf,+perfmon,+sys_ptrace");
  EXPECT_EQ(
      sp::test::metric_value(without, "synapse_profiler_probe_attached", {{"worker", "caps_worker"}, {"probe", "gc"}}),
      0.0)
      << without_log;
  EXPECT_EQ(without_log.find("block I/O probes unavailable"), std::string::npos)
      << "tracepoints need only CAP_BPF + CAP_PERFMON: " << without_log;
}

// Without any privilege (an unprivileged user): one clear error line, a non-zero exit, nothing left loaded.
TEST(CapabilitiesIT, WithoutPrivilegesItSaysWhatIsMissingAndExits) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  const int port = sp::test::free_port();
  auto r = sp::test::run_command(
      with_caps("-all", {"run", "--listen", "127.0.0.1:" + std::to_string(port), "--quiet"}, /*as_nobody=*/true));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("neither CAP_SYS_ADMIN nor CAP_BPF"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  EXPECT_FALSE(sp::test::port_listening(port));
  auto record = sp::test::run_command(with_caps(
      "-all", {"record", "--output", "/tmp/sp-caps-never-written", "--duration", "1s", "--quiet"}, /*as_nobody=*/true));
  EXPECT_NE(record.status, 0) << record.out;
}

// Started as root with every capability, the agent keeps only what it needs (loading, attaching, and the rescans that
// attach workers found later) and drops the rest, bounding set included; a worker started afterwards is attached.
TEST(CapabilitiesIT, AgentDropsWhatItDoesNotNeedAndStillAttachesNewWorkers) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-caps-drop-it");
  sp::test::AgentProcess agent(dir);
  ASSERT_TRUE(agent.running()) << agent.log();
  const std::string status = sp::test::read_text("/proc/" + std::to_string(agent.pid()) + "/status");
  auto field = [&](const std::string& key) -> std::uint64_t {
    auto pos = status.find(key + ":");
    return pos == std::string::npos ? ~0ULL : std::stoull(status.substr(pos + key.size() + 1), nullptr, 16);
  };
  const std::uint64_t allowed = (1ULL << 2) | (1ULL << 19) | (1ULL << 21) | (1ULL << 24) | (1ULL << 38) | (1ULL << 39);
  EXPECT_EQ(field("CapEff") & ~allowed, 0u) << status;
  EXPECT_EQ(field("CapPrm") & ~allowed, 0u) << status;
  EXPECT_EQ(field("CapBnd") & ~allowed, 0u) << status;
  EXPECT_NE(field("CapEff") & (1ULL << 21), 0u) << "CAP_SYS_ADMIN kept for the rescans";
  EXPECT_NE(agent.log().find("capabilities kept: "), std::string::npos) << agent.log();

  sp::test::WorkloadSpec spec;
  spec.name = "late_worker";
  spec.duration_s = 30;
  spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "0"};
  sp::test::Workload w(spec, dir);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  EXPECT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(agent.metrics(), "synapse_profiler_gc_pause_seconds_count",
                                      {{"worker", "late_worker"}, {"generation", "0"}})
                   .value_or(0) > 3;
      },
      10s))
      << agent.log();
  EXPECT_TRUE(agent.stop());
}

// Synapse's official image runs as uid 991 and a worker's config may be private to it (0600 in a 0700 directory).
// Root without CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE) is just "other" to such a file: the agent then cannot read
// the config and cannot name the worker. Measured here with the agent as root and exactly the manifests' bounding
// set, with and without CAP_DAC_READ_SEARCH; the manifests grant it because of this test.
TEST(CapabilitiesIT, PrivateConfigOfAnotherUserNeedsDacReadSearch) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  namespace fs = std::filesystem;
  const std::string dir = sp::test::make_temp_dir("sp-caps-dac-it");
  ::chmod(dir.c_str(), 0755);
  const std::string conf = dir + "/conf";  // the worker's own directory: 0700, uid 991
  fs::create_directories(conf);
  const int metrics_port = sp::test::free_port();
  const std::string config = conf + "/private_worker.yaml";
  {
    std::ofstream cfg(config);
    cfg << "worker_name: private_worker\nworker_app: synapse.app.generic_worker\nenable_metrics: true\n"
        << "worker_listeners:\n  - type: metrics\n    port: " << metrics_port
        << "\n    bind_addresses: ['127.0.0.1']\nmedia_store_path: '" << conf << "/media'\n";
  }
  ASSERT_EQ(::chown(conf.c_str(), 991, 991), 0);
  ASSERT_EQ(::chown(config.c_str(), 991, 991), 0);
  ASSERT_EQ(::chmod(conf.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(config.c_str(), 0600), 0);
  sp::test::Process worker({"/usr/bin/setpriv", "--reuid", "991", "--regid", "991", "--clear-groups",
                            "/usr/bin/python3.11", "-m", "synapse.app.generic_worker", "-c", config, "--duration", "60",
                            "--truth", conf + "/truth.jsonl", "--no-db", "--gc-schedule", "0:20", "--io-rate", "0"},
                           dir + "/worker.log", SP_WORKLOAD_DIR);
  ASSERT_TRUE(sp::test::wait_for([&] { return sp::test::port_listening(metrics_port) || !worker.running(); }, 20s) &&
              worker.running())
      << sp::test::read_text(dir + "/worker.log");

  auto names_with = [&](const std::string& bounding) {
    const int port = sp::test::free_port();
    auto agent = agent_with_caps(dir, bounding, port);
    std::string m;
    sp::test::wait_for(
        [&] {
          m = sp::test::http_get(port, "/metrics").value_or("");
          return m.find("synapse_profiler_worker_info{") != std::string::npos &&
                 m.find("pid=\"" + std::to_string(worker.pid()) + "\"") != std::string::npos;
        },
        10s);
    agent.stop(SIGTERM);
    return std::make_pair(m, sp::test::read_text(dir + "/agent-" + bounding + ".log"));
  };
  const std::string pid = std::to_string(worker.pid());
  auto [manifest, manifest_log] = names_with("-all,+sys_admin,+sys_ptrace,+dac_read_search");
  EXPECT_EQ(
      sp::test::metric_value(manifest, "synapse_profiler_worker_info", {{"worker", "private_worker"}, {"pid", pid}}),
      1.0)
      << manifest_log;
  const std::string denied = "pid " + pid + ": config " + config + ": Permission denied";
  EXPECT_EQ(manifest_log.find(denied), std::string::npos) << manifest_log;

  auto [without, without_log] = names_with("-all,+sys_admin,+sys_ptrace");
  ASSERT_TRUE(sp::test::metric_value(without, "synapse_profiler_worker_info", {{"pid", pid}})) << without_log;
  EXPECT_FALSE(sp::test::metric_value(without, "synapse_profiler_worker_info", {{"worker", "private_worker"}}))
      << "read a 0600 file of uid 991 without CAP_DAC_READ_SEARCH?\n" << without_log;
  EXPECT_NE(without_log.find(denied), std::string::npos) << without_log;
}
