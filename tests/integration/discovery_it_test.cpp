// Foundation, end to end: real Synapse-like processes, the real binary.
#include <signal.h>

#include <algorithm>
#include <regex>
#include <set>

#include "harness.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

// The JSON objects printed by `workers --json`, one per line after the first '['.
std::vector<std::string> json_objects(const std::string& out) {
  std::vector<std::string> objs;
  std::regex obj_re(R"(\{[^\n]*\})");
  for (std::sregex_iterator it(out.begin(), out.end(), obj_re), end; it != end; ++it) objs.push_back(it->str());
  return objs;
}

std::string field(const std::string& obj, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\": (\"[^\"]*\"|[^,}]*)");
  if (!std::regex_search(obj, m, re)) return {};
  return m[1].str();
}

// pid -> worker from the synapse_profiler_worker_info series: every Synapse process the agent exports, ours and
// whatever else runs on the machine (a developer's Synapse, other test runs), told apart by PID.
std::map<int, std::string> worker_info(const std::string& metrics) {
  std::map<int, std::string> out;
  const std::regex line_re(R"(synapse_profiler_worker_info\{([^}]*)\})");
  const std::regex worker_re(R"re((?:^|,)worker="([^"]*)")re");
  const std::regex pid_re(R"re((?:^|,)pid="(\d+)")re");
  for (std::sregex_iterator it(metrics.begin(), metrics.end(), line_re), end; it != end; ++it) {
    const std::string labels = (*it)[1].str();
    std::smatch worker, pid;
    if (std::regex_search(labels, worker, worker_re) && std::regex_search(labels, pid, pid_re)) {
      out[std::stoi(pid[1].str())] = worker[1].str();
    }
  }
  return out;
}

class DiscoveryIT : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sp::test::make_temp_dir("sp-discovery-it");
    for (auto [name, app] : std::vector<std::pair<std::string, std::string>>{
             {"master", "synapse.app.homeserver"},
             {"synchrotron1", "synapse.app.generic_worker"},
             {"event_persister1", "synapse.app.generic_worker"}}) {
      WorkloadSpec spec;
      spec.name = name;
      spec.app = app;
      spec.duration_s = 120;
      workloads_.push_back(std::make_unique<Workload>(spec, dir_));
    }
    for (auto& w : workloads_) {
      ASSERT_TRUE(w->wait_ready()) << w->spec().name << " did not start: " << sp::test::read_text(w->log_path());
    }
  }

  Workload& by_name(const std::string& name) {
    for (auto& w : workloads_) {
      if (w->spec().name == name) return *w;
    }
    throw std::runtime_error("no workload " + name);
  }

  std::string dir_;
  std::vector<std::unique_ptr<Workload>> workloads_;
};

}  // namespace

TEST_F(DiscoveryIT, WorkersJsonNamesEveryProcessWithItsMetricsUrl) {
  auto r = sp::test::run_command({SP_BINARY, "workers", "--json", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.out;
  // By PID: other Synapse processes on the machine may have the same worker names ("master").
  std::map<std::string, std::string> seen;  // pid -> object
  for (const auto& obj : json_objects(r.out)) seen[field(obj, "pid")] = obj;
  for (auto& w : workloads_) {
    const std::string key = std::to_string(w->pid());
    ASSERT_TRUE(seen.count(key)) << "missing pid " << key << " (" << w->spec().name << ") in\n" << r.out;
    const std::string& obj = seen[key];
    EXPECT_EQ(field(obj, "worker"), "\"" + w->spec().name + "\"");
    EXPECT_EQ(field(obj, "worker_app"), "\"" + w->spec().app + "\"");
    EXPECT_EQ(field(obj, "metrics_url"),
              "\"http://127.0.0.1:" + std::to_string(w->metrics_port()) + "/_synapse/metrics\"");
    EXPECT_EQ(field(obj, "metrics_port_confirmed"), "true");
    EXPECT_NE(obj.find(w->config_path()), std::string::npos) << obj;
    EXPECT_NE(obj.find("python3.11"), std::string::npos) << obj;
    // The GC probe method the agent would use, as `doctor` and probe_attached report it (Debian's python: USDT).
    EXPECT_EQ(field(obj, "gc_method"), "\"usdt\"") << obj;
  }
}

TEST_F(DiscoveryIT, MetricsFollowWorkersAcrossExitAndRestart) {
  sp::test::AgentProcess agent(dir_, "1s");
  ASSERT_TRUE(agent.running()) << agent.log();
  int port = agent.port();
  // Only the test's own processes count, by PID: the agent also exports any other Synapse on the machine.
  std::map<int, std::string> info;
  auto lists = [&](const Workload& w) { return info.count(w.pid()) && info[w.pid()] == w.spec().name; };
  auto listing = [&] {
    std::string out;
    for (const auto& [pid, worker] : info) out += worker + "=" + std::to_string(pid) + " ";
    return out + "\n";
  };
  auto all_three = [&] {
    auto body = sp::test::http_get(port, "/metrics");
    info = body ? worker_info(*body) : std::map<int, std::string>{};
    return std::all_of(workloads_.begin(), workloads_.end(), [&](const auto& w) { return lists(*w); });
  };
  ASSERT_TRUE(sp::test::wait_for(all_three, 10s)) << agent.log();
  EXPECT_TRUE(sp::test::http_get(port, "/healthz"));

  // Kill one: gone at the first rescan that starts after the kill. Counted in rescans, not seconds: with other
  // Synapse processes on a loaded machine one rescan can take seconds.
  Workload& victim = by_name("synchrotron1");
  int old_pid = victim.pid();
  victim.process().stop(SIGKILL);
  auto without_victim = [&] {
    auto body = sp::test::http_get(port, "/metrics");
    info = body ? worker_info(*body) : std::map<int, std::string>{};
    return !info.count(old_pid) && lists(by_name("master")) && lists(by_name("event_persister1"));
  };
  ASSERT_TRUE(agent.wait_rounds(2)) << agent.log();
  EXPECT_TRUE(without_victim()) << "still listed two rescans after the kill: " << listing() << agent.log();

  // Start it again: a new PID appears.
  WorkloadSpec spec = victim.spec();
  spec.metrics_port = 0;
  Workload again(spec, dir_ + "");
  ASSERT_TRUE(again.wait_ready()) << sp::test::read_text(again.log_path());
  auto with_new = [&] {
    auto body = sp::test::http_get(port, "/metrics");
    info = body ? worker_info(*body) : std::map<int, std::string>{};
    return lists(again) && !info.count(old_pid);
  };
  ASSERT_TRUE(agent.wait_rounds(2)) << agent.log();
  EXPECT_TRUE(with_new()) << "the restarted worker, two rescans after it listens: " << listing() << agent.log();
  EXPECT_NE(again.pid(), old_pid);

  EXPECT_TRUE(agent.stop()) << "agent did not exit cleanly on SIGTERM\n" << agent.log();
}

TEST(DoctorIT, PassesAsRootWithEveryHookLoading) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  auto r = sp::test::run_command({SP_BINARY, "doctor"});
  EXPECT_EQ(r.status, 0) << r.out;
  for (const char* hook : {"tp_btf/block_rq_issue", "raw_tp/block_rq_issue", "tp_btf/sched_process_exit", "uprobe"}) {
    std::regex ok_line("\\[ok  \\] BPF hook " + std::string(hook));
    EXPECT_TRUE(std::regex_search(r.out, ok_line)) << hook << "\n" << r.out;
  }
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

// Per worker, doctor scrapes the worker's own endpoint once and says which correlation series its metrics allow.
TEST(DoctorIT, SaysWhichCorrelationSeriesEachWorkersOwnMetricsAllow) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-doctor-it");
  sp::test::WorkloadSpec spec;
  spec.name = "doctor_gc_only";
  spec.duration_s = 30;
  spec.extra_args = {"--gc-schedule", "0:5", "--io-rate", "0"};  // no database: no synapse_storage_query_time
  sp::test::Workload w(spec, dir);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  auto r = sp::test::run_command({SP_BINARY, "doctor", "--pid", std::to_string(w.pid())});
  const std::string who = "worker doctor_gc_only (pid " + std::to_string(w.pid()) + ")";
  EXPECT_NE(r.out.find("[ok  ] " + who + ": Synapse metrics scrape"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[ok  ] " + who + ": python_gc_time for gc_coverage_ratio"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[warn] " + who + ": synapse_storage_query_time for python overhead: not exported"),
            std::string::npos)
      << r.out;
  w.process().stop(SIGTERM);
}
