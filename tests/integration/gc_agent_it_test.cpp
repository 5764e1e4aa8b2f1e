// GC pauses end to end through the agent binary: discovery -> method choice -> attach -> /metrics, compared with the
// workload's own record of every collection (its own clock, its own counts).
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <array>
#include <map>

#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

struct GenTruth {
  double count = 0;
  double seconds = 0;
  double collected = 0;
};

void add_truth(std::map<int, GenTruth>& out, const std::string& truth_path) {
  for (const auto& r : sp::test::truth_of_type(sp::test::read_truth(truth_path), "gc")) {
    auto& t = out[static_cast<int>(*r.integer("gen"))];
    t.count += 1;
    t.seconds += static_cast<double>(*r.integer("end_ns") - *r.integer("start_ns")) / 1e9;
    t.collected += static_cast<double>(*r.integer("collected"));
  }
}

class GcAgentIT : public sp::test::AgentTest {
 protected:
  GcAgentIT() : AgentTest("sp-gc-agent-it") {}

  std::unique_ptr<Workload> start(const std::string& name, const std::string& schedule, double seconds,
                                  const std::string& python = "/usr/bin/python3.11",
                                  std::map<std::string, std::string> env = {}) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = seconds;
    spec.python = python;
    spec.env = std::move(env);
    // Enough garbage that each pause lasts milliseconds: the workload's own timing around gc.collect() then differs
    // from the kernel's by far less than the tolerance even when the machine is busy.
    spec.extra_args = {"--gc-schedule", schedule, "--garbage-per-gc", "20000", "--io-rate", "0", "--start-gate", gate(name)};
    std::filesystem::remove(gate(name));
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  }

  std::string gate(const std::string& name) const { return dir_ + "/" + name + ".gate"; }

  // Counters of one worker per generation: count, sum, collected, +Inf bucket.
  using Counters = std::map<int, std::array<double, 4>>;
  Counters counters(const std::string& worker) {
    std::string m = metrics();
    Counters out;
    for (int gen : {0, 1, 2, -1}) {
      std::map<std::string, std::string> l = {{"worker", worker},
                                              {"generation", gen < 0 ? "unknown" : std::to_string(gen)}};
      auto count = sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_count", l);
      if (!count) continue;
      auto sum = sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_sum", l);
      auto collected = sp::test::metric_value(m, "synapse_profiler_gc_collected_objects_total", l);
      l["le"] = "+Inf";
      auto inf = sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_bucket", l);
      out[gen] = {*count, sum.value_or(-1), collected.value_or(-1), inf.value_or(-1)};
    }
    return out;
  }

  // Waits until the agent reports the GC probe attached to `w`'s current process by `method`, then lets it run.
  // Returns the worker's counters just before the gate opens: the agent may attach while the interpreter is still
  // importing, before the workload disables automatic GC, and those early collections are real but not in the
  // workload's record. By the time the workload listens it has disabled GC, so nothing happens until the gate opens.
  Counters attach_and_go(Workload& w, const std::string& method) {
    auto attached = [&] {
      auto m = metrics();
      auto v = sp::test::metric_value(m, "synapse_profiler_probe_attached",
                                      {{"worker", w.spec().name}, {"probe", "gc"}, {"method", method}});
      auto pid = sp::test::metric_value(m, "synapse_profiler_worker_info",
                                        {{"worker", w.spec().name}, {"pid", std::to_string(w.pid())}});
      return v == 1.0 && pid.has_value();
    };
    if (sp::test::wait_for(attached, 10s)) {
      RecordProperty(w.spec().name + ".attached_by", method);
    } else {
      ADD_FAILURE() << "not attached by " << method << "\n" << agent_log();
    }
    // One read of the kernel maps (once a second) that started after this point: what came before the gate is in.
    EXPECT_TRUE(agent_.wait_rounds(1)) << agent_log();  // its timeout is scaled like every wait_for()
    Counters before = counters(w.spec().name);
    std::ofstream(gate(w.spec().name)).put('\n');
    return before;
  }

  void finish(Workload& w) {
    auto st = w.process().wait(30s);
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w.log_path());
  }

  // Exported counts per generation, minus those before the gate, equal the truth exactly; summed durations within
  // 5 % or 50 us per pause.
  void expect_matches(const std::string& worker, const Counters& before, const std::map<int, GenTruth>& truth) {
    // The agent polls the kernel every second and drops exited workers at the next rescan; give it both.
    std::this_thread::sleep_for(sp::test::scaled(1500ms));
    Counters after = counters(worker);
    for (auto& [gen, values] : after) {
      if (auto it = before.find(gen); it != before.end()) {
        for (std::size_t i = 0; i < values.size(); ++i) values[i] -= it->second[i];
      }
    }
    for (const auto& [gen, t] : truth) {
      ASSERT_TRUE(after.count(gen)) << worker << " generation " << gen << " not exported\n" << metrics();
      const auto& [count, sum, collected, inf] = after[gen];
      sp::test::record_compared(worker + ".gen" + std::to_string(gen) + ".pauses", count, t.count);
      EXPECT_EQ(count, t.count) << worker << " generation " << gen;
      EXPECT_EQ(collected, t.collected) << worker << " generation " << gen;
      EXPECT_NEAR(sum, t.seconds, std::max(0.05 * t.seconds, 50e-6 * t.count)) << worker << " generation " << gen;
      EXPECT_EQ(inf, t.count) << "the +Inf bucket holds every pause";
    }
    for (const auto& [gen, values] : after) {
      if (!truth.count(gen)) {
        EXPECT_EQ(values[0], 0) << worker << ": pauses in generation " << gen << " it never ran";
      }
    }
  }

};

std::string copy_without_usdt(const std::string& src, const std::string& dst) {
  std::filesystem::create_directories(std::filesystem::path(dst).parent_path());
  auto r = sp::test::run_command({"/usr/bin/objcopy", "--remove-section=.note.stapsdt", src, dst});
  EXPECT_EQ(r.status, 0) << r.out;
  return dst;
}

}  // namespace

TEST_F(GcAgentIT, TwoWorkersAtDifferentRatesEachGetOnlyTheirOwnPauses) {
  auto fast = start("gc_fast", "0:20,1:4,2:1", 3);
  auto slow = start("gc_slow", "0:4,2:0.5", 3);
  auto fast_before = attach_and_go(*fast, "usdt");
  auto slow_before = attach_and_go(*slow, "usdt");
  finish(*fast);
  finish(*slow);
  std::map<int, GenTruth> tf, ts;
  add_truth(tf, fast->truth_path());
  add_truth(ts, slow->truth_path());
  ASSERT_EQ(tf.size(), 3u);
  ASSERT_EQ(ts.size(), 2u);
  expect_matches("gc_fast", fast_before, tf);
  expect_matches("gc_slow", slow_before, ts);  // including: no generation-1 pauses, which only gc_fast makes
}

TEST_F(GcAgentIT, RestartedWorkerIsPickedUpAgainAndCounted) {
  for (int round = 0; round < 2; ++round) {
    auto w = start("gc_restart", "0:10,2:2", 2);
    auto before = attach_and_go(*w, "usdt");  // round 2: includes round 1's totals, kept across the restart
    finish(*w);
    std::map<int, GenTruth> truth;
    add_truth(truth, w->truth_path());
    expect_matches("gc_restart", before, truth);
  }
}

TEST_F(GcAgentIT, StrippedPythonWithoutUsdtUsesTheMethodTable) {
  std::string python = copy_without_usdt("/usr/bin/python3.11", dir_ + "/nousdt/python3.11");
  auto w = start("gc_methoddef", "0:20,1:4,2:2", 3, python);
  auto before = attach_and_go(*w, "methoddef");
  finish(*w);
  std::map<int, GenTruth> truth;
  add_truth(truth, w->truth_path());
  expect_matches("gc_methoddef", before, truth);
}

#ifdef SP_EMBED_PYTHON
TEST_F(GcAgentIT, SharedLibpythonWithUsdt) {
  auto w = start("gc_libpython", "0:20,1:4,2:2", 3, SP_EMBED_PYTHON);
  auto before = attach_and_go(*w, "usdt");
  finish(*w);
  std::map<int, GenTruth> truth;
  add_truth(truth, w->truth_path());
  expect_matches("gc_libpython", before, truth);
}

TEST_F(GcAgentIT, SharedLibpythonWithoutUsdtUsesTheMethodTableThroughRelocations) {
  std::string libdir = dir_ + "/libpython";
  copy_without_usdt("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", libdir + "/libpython3.11.so.1.0");
  auto w = start("gc_libpython_md", "0:20,1:4,2:2", 3, SP_EMBED_PYTHON, {{"LD_LIBRARY_PATH", libdir}});
  auto before = attach_and_go(*w, "methoddef");
  finish(*w);
  std::map<int, GenTruth> truth;
  add_truth(truth, w->truth_path());
  expect_matches("gc_libpython_md", before, truth);
}
#else
TEST(GcAgentIT, SharedLibpython) { FAIL() << "python-3.11-embed not found at configure time: install python3.11-dev"; }
#endif
