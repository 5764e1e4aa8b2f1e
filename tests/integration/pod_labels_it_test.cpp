// Pod labels in node-wide mode, for real: two test workers are moved into cgroups with kubepods paths that this test
// creates (systemd-driver layout in the cgroup v2 hierarchy; cgroupfs layout in a v1 hierarchy where the host has one,
// else in v2 too), a kubelet-style log directory in a temporary directory names the first worker's pod, and the agent
// runs with --pod-log-dir/--container-log-dir pointing there. Every series carrying `worker` then carries pod,
// namespace and container (names for the first, pod UID / container id / "" for the second), worker_info carries
// pod_uid and container_id, a worker in no pod keeps exactly its old labels, and the GC pauses counted under the pod
// labels equal the workload's own record. The cgroups are removed afterwards (processes moved out first).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kUidA = "5b0e7c9a-1f2d-4e3c-8a7b-6d5c4b3a2f10";
constexpr const char* kIdA = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
constexpr const char* kUidB = "c3d2e1f0-a9b8-4c7d-9e6f-5a4b3c2d1e0f";
constexpr const char* kIdB = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

struct Mounts {
  std::string v2;       // the cgroup2 mount point, empty if none
  std::string v1_pids;  // a v1 hierarchy with the pids controller, empty if none
};

Mounts cgroup_mounts() {
  Mounts m;
  std::istringstream in(sp::test::read_text("/proc/self/mounts"));
  std::string dev, dir, type, opts, rest;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    if (!(l >> dev >> dir >> type >> opts)) continue;
    if (type == "cgroup2" && m.v2.empty()) m.v2 = dir;
    if (type == "cgroup" && m.v1_pids.empty() && ("," + opts + ",").find(",pids,") != std::string::npos) {
      m.v1_pids = dir;
    }
  }
  return m;
}

// This process's own cgroup in the hierarchy mounted at `mount` (v2: the "0::" line; v1: the line naming pids).
std::string own_cgroup(bool v2) {
  std::istringstream in(sp::test::read_text("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    if (v2 ? line.starts_with("0::") : ("," + controllers + ",").find(",pids,") != std::string::npos) {
      return line.substr(b + 1);
    }
  }
  return "/";
}

bool write_pid(const fs::path& cgroup, pid_t pid) {
  std::ofstream procs(cgroup / "cgroup.procs");
  procs << pid << "\n";
  procs.flush();
  return static_cast<bool>(procs);
}

// A chain of cgroup directories created below `mount`; on destruction every process still inside is moved back to
// where this test runs and the directories are removed, innermost first.
class FakeCgroup {
 public:
  FakeCgroup(std::string mount, bool v2, const std::vector<std::string>& chain) : mount_(std::move(mount)) {
    home_ = fs::path(mount_) / fs::path(own_cgroup(v2)).relative_path();
    fs::path p = mount_;
    for (const auto& c : chain) {
      p /= c;
      std::error_code ec;
      if (!fs::create_directory(p, ec) && ec) {
        error_ = p.string() + ": " + ec.message();
        return;
      }
      dirs_.push_back(p);
    }
  }
  ~FakeCgroup() {
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      std::istringstream procs(sp::test::read_text((*it / "cgroup.procs").string()));
      for (pid_t pid; procs >> pid;) write_pid(home_, pid);
      std::error_code ec;
      for (int i = 0; i < 50 && !fs::remove(*it, ec); ++i) std::this_thread::sleep_for(20ms);  // exiting tasks
    }
  }
  FakeCgroup(const FakeCgroup&) = delete;
  FakeCgroup& operator=(const FakeCgroup&) = delete;

  const std::string& error() const { return error_; }
  bool enter(pid_t pid) const { return !dirs_.empty() && write_pid(dirs_.back(), pid); }
  // The path /proc/PID/cgroup shows for a member (below the mount point).
  std::string path() const { return "/" + dirs_.back().lexically_relative(mount_).string(); }

 private:
  std::string mount_;
  fs::path home_;
  std::vector<fs::path> dirs_;
  std::string error_;
};

std::string underscored(std::string uid) {
  for (char& c : uid) {
    if (c == '-') c = '_';
  }
  return uid;
}

std::unique_ptr<sp::test::Workload> start_worker(const std::string& name, const std::string& dir) {
  sp::test::WorkloadSpec spec;
  spec.name = name;
  spec.duration_s = 20;  // also bounds the wait for the gate: start-up, moves and attaching must fit in it
  spec.extra_args = {"--gc-schedule", "0:5", "--io-rate", "0", "--start-gate", dir + "/" + name + ".gate",
                     "--linger", "60"};
  return std::make_unique<sp::test::Workload>(spec, dir);
}

// Every sample line of `text` whose labels contain worker="NAME".
std::vector<std::string> lines_of(const std::string& text, const std::string& worker) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("#") && line.find("worker=\"" + worker + "\"") != std::string::npos) out.push_back(line);
  }
  return out;
}

}  // namespace

TEST(PodLabelsIT, WorkersInKubepodsCgroupsCarryPodNamespaceAndContainer) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  const Mounts mounts = cgroup_mounts();
  if (mounts.v2.empty() && mounts.v1_pids.empty()) SP_SKIP_UNLESS_BPF_REQUIRED("no cgroup hierarchy mounted");
  const std::string dir = sp::test::make_temp_dir("sp-podlabels-it");
  const std::string top = "sp-podlabels-it-" + std::to_string(::getpid());

  // Pod A: systemd driver (cgroup v2 if mounted). Pod B: cgroupfs driver (a v1 hierarchy if there is one).
  const bool a_v2 = !mounts.v2.empty();
  FakeCgroup cg_a(a_v2 ? mounts.v2 : mounts.v1_pids, a_v2,
                  {top, "kubepods.slice", "kubepods-burstable.slice",
                   "kubepods-burstable-pod" + underscored(kUidA) + ".slice",
                   std::string("cri-containerd-") + kIdA + ".scope"});
  ASSERT_EQ(cg_a.error(), "");
  const bool b_v2 = mounts.v1_pids.empty();
  FakeCgroup cg_b(b_v2 ? mounts.v2 : mounts.v1_pids, b_v2,
                  {top + "-b", "kubepods", "besteffort", std::string("pod") + kUidB, kIdB});
  ASSERT_EQ(cg_b.error(), "");

  // The kubelet's log directories: pod A is known (two containers, so the name comes from the container link), pod B
  // is not; odd entries around them are ignored.
  const fs::path pods = fs::path(dir) / "pods", containers = fs::path(dir) / "containers";
  for (const char* c : {"synapse", "profiler"}) {
    fs::create_directories(pods / (std::string("matrix_synapse-worker-0_") + kUidA) / c);
  }
  fs::create_directories(pods / (std::string("Evil\"}_x_") + kUidB) / "synapse");
  fs::create_directories(containers);
  fs::create_symlink("/var/log/pods/none/0.log",
                     containers / (std::string("synapse-worker-0_matrix_synapse-") + kIdA + ".log"));
  fs::create_symlink("/etc/shadow", containers / (std::string("x_y_z\n-") + kIdB + ".log"));

  auto a = start_worker("pod_a", dir);
  auto b = start_worker("pod_b", dir);
  auto bare = start_worker("bare_c", dir);
  for (auto* w : {a.get(), b.get(), bare.get()}) ASSERT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
  ASSERT_TRUE(cg_a.enter(a->pid()));
  ASSERT_TRUE(cg_b.enter(b->pid()));
  const std::string cgroup_a = sp::test::read_text("/proc/" + std::to_string(a->pid()) + "/cgroup");
  ASSERT_NE(cgroup_a.find(cg_a.path()), std::string::npos) << cgroup_a;

  // The agent starts after the moves: a worker's pod is read when it is found. Pinned to the three workers, so that
  // whatever else runs on the machine does not slow its start and stop (discovery reads the pod the same way).
  sp::test::AgentProcess agent(dir, "500ms",
                               {"--pod-log-dir", pods.string(), "--container-log-dir", containers.string(),
                                "--scrape-interval", "1s", "--pid", std::to_string(a->pid()), "--pid",
                                std::to_string(b->pid()), "--pid", std::to_string(bare->pid())});
  ASSERT_TRUE(agent.running()) << agent.log();
  const std::map<std::string, std::string> labels_a = {
      {"worker", "pod_a"}, {"pod", "synapse-worker-0"}, {"namespace", "matrix"}, {"container", "synapse"}};
  const std::map<std::string, std::string> labels_b = {
      {"worker", "pod_b"}, {"pod", kUidB}, {"namespace", ""}, {"container", kIdB}};
  auto attached = [&](const std::map<std::string, std::string>& l) {
    auto with = l;
    with["probe"] = "gc";
    return sp::test::metric_value(agent.metrics(), "synapse_profiler_probe_attached", with) == 1.0;
  };
  ASSERT_TRUE(sp::test::wait_for([&] { return attached(labels_a) && attached(labels_b); }, 15s))
      << agent.log() << "\n" << agent.metrics();
  // One read of the kernel maps started after this point: collections before the gate (start-up) are counted now.
  ASSERT_TRUE(agent.wait_rounds(1)) << agent.log();
  auto gen0 = [&](std::map<std::string, std::string> l) {
    l["generation"] = "0";
    return sp::test::metric_value(agent.metrics(), "synapse_profiler_gc_pause_seconds_count", l).value_or(0);
  };
  const double before_a = gen0(labels_a), before_b = gen0(labels_b);
  for (const char* name : {"pod_a", "pod_b", "bare_c"}) std::ofstream(dir + "/" + name + ".gate").put('\n');

  // Each run lasts 20 s, then lingers; the summary record marks its end.
  auto finished = [&](sp::test::Workload& w) {
    return sp::test::read_text(w.truth_path()).find("\"summary\"") != std::string::npos;
  };
  ASSERT_TRUE(sp::test::wait_for([&] { return finished(*a) && finished(*b) && finished(*bare); }, 40s))
      << sp::test::read_text(a->log_path());
  std::this_thread::sleep_for(2500ms);  // a kernel poll and a scrape after the last collection
  const std::string m = agent.metrics();

  // GC pauses under the pod labels equal the workloads' own records.
  for (auto [w, l, before] : {std::tuple{a.get(), labels_a, before_a}, std::tuple{b.get(), labels_b, before_b}}) {
    const auto truth = sp::test::truth_of_type(sp::test::read_truth(w->truth_path()), "gc");
    double gen0_truth = 0;
    for (const auto& r : truth) gen0_truth += *r.integer("gen") == 0 ? 1 : 0;
    ASSERT_GT(gen0_truth, 5) << w->spec().name << ": " << sp::test::read_text(w->truth_path()).substr(0, 2000);
    EXPECT_EQ(gen0(l) - before, gen0_truth) << w->spec().name << "\n" << m;
  }

  // worker_info: identifiers for both, names where resolved.
  EXPECT_EQ(sp::test::metric_value(m, "synapse_profiler_worker_info",
                                   {{"worker", "pod_a"}, {"pod", "synapse-worker-0"}, {"namespace", "matrix"},
                                    {"container", "synapse"}, {"pod_uid", kUidA}, {"container_id", kIdA}}),
            1.0)
      << m;
  EXPECT_EQ(sp::test::metric_value(m, "synapse_profiler_worker_info",
                                   {{"worker", "pod_b"}, {"pod", kUidB}, {"namespace", ""}, {"container", kIdB},
                                    {"pod_uid", kUidB}, {"container_id", kIdB}}),
            1.0)
      << m;

  // Pass-through and scrape status carry them too.
  auto passthrough = labels_a;
  passthrough["gen"] = "0";
  EXPECT_GT(sp::test::metric_value(m, "python_gc_time_count", passthrough).value_or(0), 0) << m;
  EXPECT_EQ(sp::test::metric_value(m, "synapse_profiler_synapse_up", labels_b), 1.0) << m;

  // The contract: every series with `worker` for a pod worker has all three labels, exactly once each; the bare
  // worker has none of them.
  for (const auto& [worker, l] : {std::pair{"pod_a", labels_a}, std::pair{"pod_b", labels_b}}) {
    const auto lines = lines_of(m, worker);
    EXPECT_GT(lines.size(), 20u) << worker;
    for (const auto& line : lines) {
      for (const char* key : {"pod", "namespace", "container"}) {
        const std::string kv = std::string(",") + key + "=\"" + l.at(key) + "\"";
        EXPECT_NE(line.find(kv), std::string::npos) << line;
        EXPECT_EQ(line.find(kv, line.find(kv) + 1), std::string::npos) << "twice: " << line;
      }
    }
  }
  const auto bare_lines = lines_of(m, "bare_c");
  EXPECT_GT(bare_lines.size(), 20u);
  for (const auto& line : bare_lines) {
    for (const char* key : {",pod=", ",namespace=", ",container=", "pod_uid="}) {
      EXPECT_EQ(line.find(key), std::string::npos) << line;
    }
  }
  EXPECT_EQ(m.find("Evil"), std::string::npos);
  EXPECT_EQ(m.find("shadow"), std::string::npos);
  EXPECT_TRUE(agent.stop()) << agent.log();
}
