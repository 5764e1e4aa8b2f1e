// Event storms through the agent binary: while the agent is stopped (SIGSTOP: its consumer drains nothing), a worker
// collects garbage, or sends queries, as fast as it can, far more often than the ring buffer holds. The per-event
// records overflow and each drop is counted in events_lost_total{probe=...}, while the in-kernel histograms still count
// every pause and every query: the exported counts equal what the worker made by its own count.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "gc.h"
#include "harness.h"
#include "libpq.h"
#include "pgserver.h"

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

// Once GATE exists, sends N `SELECT 1` back to back on one autocommit connection (no BEGIN/COMMIT: one statement each,
// client and server side), writes how many it sent to COUNT, then idles. Before that, once GATE.warm exists (the
// agent has attached), WARM statements, so that the test sees both sides count; "READY" goes to COUNT.warm after them.
constexpr const char* kQueryStormModule = R"PY(
import gc
gc.disable()
import os, sys, time
import psycopg2
gate, count_path, n, warm = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
conn = psycopg2.connect(host=os.environ["STORM_PG_HOST"], port=int(os.environ["STORM_PG_PORT"]),
                        user=os.environ["STORM_PG_USER"], dbname=os.environ["STORM_PG_DB"])
conn.autocommit = True
cur = conn.cursor()
while not os.path.exists(gate + ".warm"):
    time.sleep(0.01)
for _ in range(warm):
    cur.execute("SELECT 1")
with open(count_path + ".warm", "w") as f:
    f.write("READY")
while not os.path.exists(gate):
    time.sleep(0.01)
done = 0
for _ in range(n):
    cur.execute("SELECT 1")
    done += 1
with open(count_path + ".tmp", "w") as f:
    f.write(str(done))
os.rename(count_path + ".tmp", count_path)
time.sleep(300)
)PY";

// Records each ring buffer holds: its size over one record's footprint (an 8-byte header plus the record rounded up
// to 8 bytes). The GC ring takes 40-byte records; the query rings take records cut to their text, here "SELECT 1"
// and its NUL. Sizes from the headers the BPF objects are built with.
constexpr double ring_records(double ring_bytes, std::size_t record) {
  return ring_bytes / static_cast<double>(8 + (record + 7) / 8 * 8);
}
constexpr double kGcRingRecords = ring_records(SP_GC_RING_BYTES, sizeof(gc_event));
constexpr double kLibpqRingRecords = ring_records(SP_PQ_RING_BYTES, offsetof(pq_event, text) + sizeof("SELECT 1"));
constexpr double kPgServerRingRecords =
    ring_records(SP_PGS_RING_BYTES, offsetof(pgs_query_event, text) + sizeof("SELECT 1"));

// A directory holding a package `synapse.app.generic_worker` whose module is `code`, and a config naming the worker.
std::string fake_worker(const std::string& dir, const std::string& worker, const char* code) {
  namespace fs = std::filesystem;
  const std::string app = dir + "/" + worker;
  fs::create_directories(app + "/synapse/app");
  std::ofstream(app + "/synapse/__init__.py");
  std::ofstream(app + "/synapse/app/__init__.py");
  std::ofstream(app + "/synapse/app/generic_worker.py") << code;
  std::ofstream(app + "/worker.yaml") << "worker_name: " << worker << "\nworker_app: synapse.app.generic_worker\n";
  return app;
}

// Sum over verbs of a worker's query counts (db_client or db_server; verb "unknown" holds the lost records' queries).
double query_count(const std::string& metrics, const std::string& family, const std::string& worker) {
  return sp::test::sum_of(metrics, "synapse_profiler_" + family + "_query_seconds_count", {{"worker", worker}});
}

// Stops the agent (SIGSTOP: its consumer drains nothing), opens the storm's gate, waits for the storm to write its
// count, lets the agent go on and waits until it has drained twice. The count the storm wrote, or -1 (a failure).
double storm_while_stopped(const sp::test::AgentProcess& agent, const std::string& gate, const std::string& count_path,
                           const std::string& storm_log, std::chrono::seconds timeout) {
  if (kill(agent.pid(), SIGSTOP) != 0) {
    ADD_FAILURE() << "cannot stop the agent";
    return -1;
  }
  std::ofstream(gate).put('\n');
  const bool finished = sp::test::wait_for([&] { return std::filesystem::exists(count_path); }, timeout);
  EXPECT_EQ(kill(agent.pid(), SIGCONT), 0);
  if (!finished) {
    ADD_FAILURE() << "the storm did not finish:\n" << sp::test::read_text(storm_log);
    return -1;
  }
  EXPECT_TRUE(agent.wait_rounds(2)) << "the agent did not resume";
  return std::stod(sp::test::read_text(count_path));
}

}  // namespace

TEST(StormIT, GcStormWithTheConsumerStoppedLosesRecordsButNoCounts) {
  namespace fs = std::filesystem;
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  const std::string dir = sp::test::make_temp_dir("sp-storm-it");
  const std::string app = fake_worker(dir, "gc_storm", kStormModule);
  const std::string gate = dir + "/gate", count_path = dir + "/count";
  constexpr int kCollections = 100000;
  sp::test::Process storm({"/usr/bin/python3.11", "-m", "synapse.app.generic_worker", "-c", app + "/worker.yaml", gate,
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
  ASSERT_TRUE(agent.wait_rounds(2)) << agent_log();  // everything so far drained
  const std::string m0 = metrics();
  const double count_before = sp::test::metric_value(m0, "synapse_profiler_gc_pause_seconds_count", gen0).value_or(0);
  const double lost_before =
      sp::test::metric_value(m0, "synapse_profiler_events_lost_total", {{"probe", "gc"}}).value_or(0);

  const double made = storm_while_stopped(agent, gate, count_path, dir + "/storm.log", 60s);
  ASSERT_EQ(made, kCollections);
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

// The same for queries: both the libpq (client) and the PostgreSQL (server) records overflow while the agent is
// stopped; their lost records are counted, and each side's query count still equals what the worker sent.
TEST(StormIT, QueryStormWithTheConsumerStoppedLosesRecordsButNoCounts) {
  namespace fs = std::filesystem;
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  const auto pg = sp::test::test_postgres();
  if (!pg) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
  const std::string dir = sp::test::make_temp_dir("sp-storm-it");
  const std::string worker = "query_storm";
  const std::string app = fake_worker(dir, worker, kQueryStormModule);
  const std::string gate = dir + "/gate", count_path = dir + "/count";
  constexpr int kQueries = 50000;  // more than either ring holds
  sp::test::Process storm({"/usr/bin/env", "STORM_PG_HOST=" + pg->host, "STORM_PG_PORT=" + std::to_string(pg->port),
                           "STORM_PG_USER=" + pg->user, "STORM_PG_DB=" + pg->db, "/usr/bin/python3.11", "-m",
                           "synapse.app.generic_worker", "-c", app + "/worker.yaml", gate, count_path,
                           std::to_string(kQueries), "50"},
                          dir + "/storm.log", app);
  sp::test::AgentProcess agent(dir, "500ms", {"--pid", std::to_string(storm.pid())});
  ASSERT_TRUE(agent.running()) << agent.log();
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(agent.metrics(), "synapse_profiler_probe_attached",
                                      {{"worker", worker}, {"probe", "libpq"}}) == 1.0;
      },
      15s))
      << agent.log();
  std::ofstream(gate + ".warm").put('\n');
  // Both sides count the warm-up queries: libpq is attached and the backend is mapped to the worker.
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        const std::string m = agent.metrics();
        return fs::exists(count_path + ".warm") && query_count(m, "db_client", worker) >= 50 &&
               query_count(m, "db_server", worker) >= 50;
      },
      20s))
      << agent.metrics() << agent.log() << sp::test::read_text(dir + "/storm.log");
  ASSERT_TRUE(agent.wait_rounds(2)) << agent.log();  // everything so far drained
  const std::string m0 = agent.metrics();
  const double client_before = query_count(m0, "db_client", worker);
  const double server_before = query_count(m0, "db_server", worker);
  auto lost = [](const std::string& m, const char* probe) {
    return sp::test::metric_value(m, "synapse_profiler_events_lost_total", {{"probe", probe}}).value_or(0);
  };
  const double client_lost_before = lost(m0, "libpq"), server_lost_before = lost(m0, "postgres");

  const double sent = storm_while_stopped(agent, gate, count_path, dir + "/storm.log", 120s);
  ASSERT_EQ(sent, kQueries);
  const std::string m = agent.metrics();
  EXPECT_EQ(query_count(m, "db_client", worker) - client_before, sent) << "libpq side: every query counted\n" << m;
  EXPECT_EQ(query_count(m, "db_server", worker) - server_before, sent) << "server side: every statement counted\n" << m;
  const double client_lost = lost(m, "libpq") - client_lost_before;
  const double server_lost = lost(m, "postgres") - server_lost_before;
  EXPECT_GE(client_lost, sent - kLibpqRingRecords) << m;
  EXPECT_GE(server_lost, sent - kPgServerRingRecords) << m;
  // The lost records' queries are kept under verb "unknown": at least the ones the ring could not hold.
  EXPECT_GE(sp::test::sum_of(m, "synapse_profiler_db_client_query_seconds_count", {{"worker", worker}, {"verb", "unknown"}}),
            client_lost);
  std::cout << sent << " queries; records dropped and counted: libpq " << client_lost << ", postgres " << server_lost
            << "\n";
  EXPECT_TRUE(agent.running()) << agent.log();
  EXPECT_TRUE(agent.stop()) << agent.log();
}
