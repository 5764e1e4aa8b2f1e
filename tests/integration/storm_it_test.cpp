// Event storms through the agent binary: while the agent is stopped (SIGSTOP: its consumer drains nothing), a worker
// collects garbage as fast as it can, far more often than the ring buffer holds. The per-event records overflow and
// each drop is counted in events_lost_total{probe="gc"}, while the in-kernel histogram still counts every pause:
// _count and the +Inf bucket equal the number of collections the worker made by its own count.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.h"

using namespace std::chrono_literals;

namespace {

// A Synapse look-alike that, once GATE exists, runs gen-0 collections back to back and writes how many it made to
// COUNT, then idles until killed. Automatic collection is off from the first line, so every collection is its own.
constexpr const char* kStormModule = R"PY(
import gc
gc.disable()
import os, sys, time
gate, count_path, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
while not os.path.exists(gate):
    time.sleep(0.01)
done = 0
for _ in range(n):
    gc.collect(0)
    done += 1
with open(count_path + ".tmp", "w") as f:
    f.write(str(done))
os.rename(count_path + ".tmp", count_path)
time.sleep(300)
)PY";

// Records the gc ring buffer holds (bpf/gc.bpf.c: 256 KiB of 40-byte records, each with an 8-byte header).
constexpr double kGcRingRecords = 256.0 * 1024 / 48;

}  // namespace

TEST(StormIT, GcStormWithTheConsumerStoppedLosesRecordsButNoCounts) {
  namespace fs = std::filesystem;
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  const std::string dir = sp::test::make_temp_dir("sp-storm-it");
  const std::string app = dir + "/storm";
  fs::create_directories(app + "/synapse/app");
  std::ofstream(app + "/synapse/__init__.py");
  std::ofstream(app + "/synapse/app/__init__.py");
  std::ofstream(app + "/synapse/app/generic_worker.py") << kStormModule;
  std::ofstream(app + "/storm.yaml") << "worker_name: gc_storm\nworker_app: synapse.app.generic_worker\n";
  const std::string gate = dir + "/gate", count_path = dir + "/count";
  constexpr int kCollections = 100000;
  sp::test::Process storm({"/usr/bin/python3.11", "-m", "synapse.app.generic_worker", "-c", app + "/storm.yaml", gate,
                           count_path, std::to_string(kCollections)},
                          dir + "/storm.log", app);
  // The agent watches only the storm (--pid): other Synapse processes on the machine add nothing to the counters.
  sp::test::AgentProcess agent(dir, "500ms", {"--pid", std::to_string(storm.pid())});
  ASSERT_TRUE(agent.running()) << agent.log();
  auto metrics = [&] { return agent.metrics(); };
  auto agent_log = [&] { return agent.log(); };
  const std::map<std::string, std::string> gen0 = {{"worker", "gc_storm"}, {"generation", "0"}};
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(metrics(), "synapse_profiler_probe_attached",
                                      {{"worker", "gc_storm"}, {"probe", "gc"}}) == 1.0;
      },
      15s))
      << agent_log();
  std::this_thread::sleep_for(600ms);  // past one kernel poll
  const std::string m0 = metrics();
  const double count_before = sp::test::metric_value(m0, "synapse_profiler_gc_pause_seconds_count", gen0).value_or(0);
  const double lost_before =
      sp::test::metric_value(m0, "synapse_profiler_events_lost_total", {{"probe", "gc"}}).value_or(0);

  ASSERT_EQ(kill(agent.pid(), SIGSTOP), 0);
  std::ofstream(gate).put('\n');
  const bool finished = sp::test::wait_for([&] { return fs::exists(count_path); }, 60s);
  ASSERT_EQ(kill(agent.pid(), SIGCONT), 0);
  ASSERT_TRUE(finished) << sp::test::read_text(dir + "/storm.log");
  const double made = std::stod(sp::test::read_text(count_path));
  ASSERT_EQ(made, kCollections);

  std::this_thread::sleep_for(1500ms);  // a few kernel polls of the agent, now running again
  const std::string m = metrics();
  const double count = sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_count", gen0).value_or(-1);
  auto inf_labels = gen0;
  inf_labels["le"] = "+Inf";
  const double inf = sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_bucket", inf_labels).value_or(-1);
  const double lost = sp::test::metric_value(m, "synapse_profiler_events_lost_total", {{"probe", "gc"}}).value_or(0);
  EXPECT_EQ(count - count_before, made) << "the in-kernel histogram counts every collection";
  EXPECT_EQ(inf - count_before, made);
  // The ring held at most its capacity while nobody drained it; every other record was dropped and counted.
  EXPECT_GE(lost - lost_before, made - kGcRingRecords) << m;
  EXPECT_GT(sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_sum", gen0).value_or(0), 0);
  std::cout << made << " collections; " << lost - lost_before << " records dropped and counted\n";
  EXPECT_TRUE(agent.running()) << agent_log();
  EXPECT_TRUE(agent.stop()) << agent_log();
}
