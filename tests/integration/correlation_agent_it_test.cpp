// The correlation series end to end: the agent scrapes each worker's own metrics and sets them against what its
// probes measured. Each is compared with the workload's own record of what it did (its clock, its counters).
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

using Interval = std::pair<std::int64_t, std::int64_t>;

double union_seconds(std::vector<Interval> v) {
  std::sort(v.begin(), v.end());
  std::int64_t total = 0, lo = 0, hi = 0;
  bool open = false;
  for (auto [s, e] : v) {
    if (e <= s) continue;
    if (open && s <= hi) {
      hi = std::max(hi, e);
      continue;
    }
    if (open) total += hi - lo;
    lo = s;
    hi = e;
    open = true;
  }
  if (open) total += hi - lo;
  return static_cast<double>(total) / 1e9;
}

// Records of `type` after the workload's gate opened, as [start_key, end_key] intervals.
std::vector<Interval> intervals(const std::vector<sp::test::TruthRecord>& all, const std::string& type,
                                const std::string& start_key, const std::string& end_key) {
  auto gate = sp::test::truth_of_type(all, "gate");
  std::int64_t gate_ns = gate.empty() ? 0 : *gate.front().integer("open_ns");
  std::vector<Interval> out;
  for (const auto& r : sp::test::truth_of_type(all, type)) {
    auto s = r.integer(start_key), e = r.integer(end_key);
    if (s && e && *s >= gate_ns) out.emplace_back(*s, *e);
  }
  return out;
}

class CorrelationAgentIT : public sp::test::AgentTest {
 protected:
  // Scrapes every 300 ms, so the final counters of a run are read soon after it; a window longer than any test, so
  // time_share covers each worker's whole watched life.
  CorrelationAgentIT()
      : AgentTest("sp-correlation-it", /*needs_postgres=*/true, {"--scrape-interval", "300ms", "--window", "10m"}) {}

  std::string gate(const std::string& name) const { return dir_ + "/" + name + ".gate"; }

  std::unique_ptr<Workload> start(const std::string& name, std::vector<std::string> args, bool use_db = true) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 4;
    spec.use_db = use_db;
    spec.extra_args = {"--start-gate", gate(name), "--linger", "60"};
    spec.extra_args.insert(spec.extra_args.end(), args.begin(), args.end());
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  }

  std::optional<double> value(const std::string& name, const std::map<std::string, std::string>& labels) {
    return sp::test::metric_value(metrics(), name, labels);
  }

  // Opens the gate once the probes are attached and a scrape of the worker has been set against them (for a
  // database worker, the baseline of the query time comparison is then taken before any activity).
  void attach_and_go(Workload& w) {
    const std::string name = w.spec().name;
    const bool db = w.spec().use_db;
    auto ready = [&] {
      return (!db || value("synapse_profiler_probe_attached", {{"worker", name}, {"probe", "libpq"}}) == 1.0) &&
             (!db || value("synapse_profiler_probe_attached", {{"worker", name}, {"probe", "postgres"}}) == 1.0) &&
             value("synapse_profiler_probe_attached", {{"worker", name}, {"probe", "gc"}}) == 1.0 &&
             value("synapse_profiler_synapse_up", {{"worker", name}}) == 1.0 &&
             (!db || value("synapse_profiler_db_python_overhead_seconds_total", {{"worker", name}}).has_value());
    };
    ASSERT_TRUE(sp::test::wait_for(ready, 15s)) << metrics().substr(0, 3000) << agent_log();
    std::ofstream(gate(name)).put('\n');
  }

  // Waits for the run's summary record, then for two more scrapes and drains.
  std::vector<sp::test::TruthRecord> finish(Workload& w) {
    auto done = [&] { return !sp::test::truth_of_type(sp::test::read_truth(w.truth_path()), "summary").empty(); };
    EXPECT_TRUE(sp::test::wait_for(done, 30s)) << sp::test::read_text(w.log_path());
    EXPECT_TRUE(w.process().running()) << "the workload should linger: " << sp::test::read_text(w.log_path());
    std::this_thread::sleep_for(1500ms);
    return sp::test::read_truth(w.truth_path());
  }
};

}  // namespace

// A worker that sleeps 10 ms inside Synapse's timed region around every query shows that sleep as Python overhead,
// on top of what the same request mix costs without it; and the GC seconds its probes measured cover what Synapse
// timed around its own gc.collect() calls.
TEST_F(CorrelationAgentIT, PythonOverheadAndGcCoverageAgainstTheWorkersOwnCounters) {
  // Collections of 40000 objects (a few ms each): the probes' own cost per collection (two traps, about 10 us here,
  // inside Synapse's timing but outside the probes') stays below 1 % of each.
  const std::vector<std::string> gc = {"--gc-schedule", "0:10", "--garbage-per-gc", "20000"};
  auto sleepy =
      start("corr_sleepy", {"--query-sleep", "0.01", "--query-rate", "20", "--io-rate", "0", gc[0], gc[1], gc[2], gc[3]});
  auto plain = start("corr_plain", {"--query-rate", "20", "--io-rate", "0", gc[0], gc[1], gc[2], gc[3]});

  attach_and_go(*sleepy);
  attach_and_go(*plain);
  auto truth = finish(*sleepy);
  finish(*plain);

  // What the worker slept inside its timed region after the gate (its schema set-up before is in the baseline).
  auto gate = sp::test::truth_of_type(truth, "gate");
  ASSERT_EQ(gate.size(), 1u);
  const std::int64_t gate_ns = *gate.front().integer("open_ns");
  double slept = 0;
  std::size_t timed = 0;
  for (const auto& r : sp::test::truth_of_type(truth, "query")) {
    if (r.line.find("\"timed\":true") == std::string::npos || *r.integer("start_ns") < gate_ns) continue;
    slept += static_cast<double>(r.integer("sleep_ns").value_or(0)) / 1e9;
    ++timed;
  }
  ASSERT_GT(timed, 100u) << "too few timed queries to compare";
  ASSERT_GT(slept, 1.0);
  auto overhead_sleepy = value("synapse_profiler_db_python_overhead_seconds_total", {{"worker", "corr_sleepy"}});
  auto overhead_plain = value("synapse_profiler_db_python_overhead_seconds_total", {{"worker", "corr_plain"}});
  ASSERT_TRUE(overhead_sleepy && overhead_plain) << metrics().substr(0, 3000);
  // Without the sleep, what is left is psycopg2's and Python's own work around libpq: small next to 10 ms a query.
  EXPECT_LT(*overhead_plain, 0.1 * slept);
  EXPECT_GE(*overhead_plain, 0.0);
  EXPECT_NEAR(*overhead_sleepy, slept + *overhead_plain, 0.05 * slept);

  for (const char* worker : {"corr_sleepy", "corr_plain"}) {
    auto ratio = value("synapse_profiler_gc_coverage_ratio", {{"worker", worker}});
    ASSERT_TRUE(ratio) << worker << "\n" << metrics().substr(0, 3000);
    // The workload's own timing of every collection after the gate (its GC series exist from the start, so the
    // agent's first scrape, before the gate, is the baseline), and the probes' pause seconds over the same time.
    auto& w = std::string(worker) == "corr_sleepy" ? sleepy : plain;
    double synapse_gc = 0;
    for (const auto& r : intervals(sp::test::read_truth(w->truth_path()), "gc", "start_ns", "end_ns")) {
      synapse_gc += static_cast<double>(r.second - r.first) / 1e9;
    }
    auto probe_gc = value("synapse_profiler_gc_pause_seconds_sum", {{"worker", worker}, {"generation", "0"}});
    ASSERT_TRUE(probe_gc && synapse_gc > 0.05) << worker;
    EXPECT_NEAR(*ratio, *probe_gc / synapse_gc, 0.01) << worker;
    // The probes bracket the C collector; Synapse's timing also holds the call around it: at most 1, and close.
    EXPECT_LE(*ratio, 1.0) << worker;
    EXPECT_GT(*ratio, 0.85) << worker;
  }
}

// Over a window longer than the run, each share times the window is the time the worker spent in that state; the
// workload's own clock gives the same union of intervals for GC pauses and libpq calls; PostgreSQL's execution of
// the 1 s sleeps it holds is almost all of its client time; its O_DIRECT writes keep the disk busy for no longer
// than they took. A worker that does nothing has no share that is not its own.
TEST_F(CorrelationAgentIT, TimeShareOfEachCauseMatchesTheWorkersOwnClock) {
  auto busy = start("corr_busy", {"--gc-schedule", "none", "--query-rate", "0", "--gc-hold-query", "1.0",
                                  "--io-rate", "5", "--direct-io"});
  auto idle = start("corr_idle", {"--gc-schedule", "none", "--io-rate", "0"}, /*use_db=*/false);
  attach_and_go(*busy);
  attach_and_go(*idle);
  auto truth = finish(*busy);
  auto idle_truth = finish(*idle);

  auto share = [&](const std::string& worker, const std::string& cause) {
    return value("synapse_profiler_time_share", {{"worker", worker}, {"cause", cause}});
  };
  std::string m = metrics();
  auto window = sp::test::metric_value(m, "synapse_profiler_time_share_window_seconds", {{"worker", "corr_busy"}});
  ASSERT_TRUE(window) << m.substr(0, 3000);
  EXPECT_GT(*window, 4.0);
  EXPECT_LT(*window, 60.0) << "the span is the time the worker was watched, not the whole window";

  const double gc_truth = union_seconds(intervals(truth, "gc", "start_ns", "end_ns"));
  const double db_truth = union_seconds(intervals(truth, "query", "exec_start_ns", "exec_end_ns"));
  const double io_truth = union_seconds(intervals(truth, "io", "start_ns", "end_ns"));
  ASSERT_GT(gc_truth, 0.03) << "the workload did not collect";
  ASSERT_GT(db_truth, 1.5) << "the workload did not hold its queries";
  ASSERT_GT(io_truth, 0.0) << "the workload did no I/O";

  auto gc = share("corr_busy", "gc"), client = share("corr_busy", "db_client"), server = share("corr_busy", "db_server"),
       disk = share("corr_busy", "disk");
  ASSERT_TRUE(gc && client && server && disk) << m.substr(0, 3000);
  EXPECT_NEAR(*gc * *window, gc_truth, 0.1 * gc_truth);
  EXPECT_NEAR(*client * *window, db_truth, 0.05 * db_truth);
  EXPECT_LE(*server * *window, *client * *window);
  EXPECT_GT(*server * *window, 0.9 * db_truth);
  EXPECT_GT(*disk, 0.0);
  // The disk share also holds requests of the PostgreSQL backends serving the worker (catalog reads after an earlier
  // test dropped the page cache, for instance): the union is at most the worker's own I/O time plus their total.
  double postgres_io = 0;
  {
    std::istringstream in(m);
    std::string line;
    const std::regex re("^synapse_profiler_disk_io_seconds_sum\\{([^}]*)\\} (\\S+)$");
    while (std::getline(in, line)) {
      std::smatch match;
      if (!std::regex_match(line, match, re)) continue;
      const std::string labels = match[1];
      if (labels.find("worker=\"corr_busy\"") != std::string::npos && labels.find("via=\"postgres\"") != std::string::npos) {
        postgres_io += std::stod(match[2]);
      }
    }
  }
  EXPECT_LE(*disk * *window, 1.05 * (io_truth + postgres_io) + 0.01) << "postgres I/O " << postgres_io;

  // The idle worker: no database, so no query share at all. It makes no collection of its own, but an interpreter
  // starting up collects (generations 0 and 1) before the workload turns automatic collection off, and a probe
  // attached that early counts those; the busy worker collects generation 2 only. So: the idle worker's generation 2
  // pauses are exactly what it recorded (none), and none of its shares holds more than its own counted pauses and
  // requests (an idle Python process can still read from disk: pages faulted back in after an earlier test dropped
  // the page cache).
  for (const char* cause : {"db_client", "db_server"}) EXPECT_EQ(share("corr_idle", cause), 0.0) << cause;
  m = metrics();
  auto idle_window = sp::test::metric_value(m, "synapse_profiler_time_share_window_seconds", {{"worker", "corr_idle"}});
  ASSERT_TRUE(idle_window) << m.substr(0, 3000);
  std::map<std::string, std::string> idle_f = {{"worker", "corr_idle"}};
  std::size_t idle_gen2 = 0;
  for (const auto& r : sp::test::truth_of_type(idle_truth, "gc")) idle_gen2 += r.integer("gen") == 2;
  EXPECT_EQ(
      sp::test::sum_of(m, "synapse_profiler_gc_pause_seconds_count", {{"worker", "corr_idle"}, {"generation", "2"}}),
      static_cast<double>(idle_gen2));
  EXPECT_LE(*share("corr_idle", "gc") * *idle_window,
            sp::test::sum_of(m, "synapse_profiler_gc_pause_seconds_sum", idle_f) + 1e-6);
  EXPECT_LE(*share("corr_idle", "disk") * *idle_window,
            sp::test::sum_of(m, "synapse_profiler_disk_io_seconds_sum", idle_f) + 1e-6);
}
