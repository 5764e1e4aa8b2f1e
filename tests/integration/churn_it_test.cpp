// Churn through the agent binary: workers restarted with new PIDs, a PostgreSQL cluster restarted under running
// workers (every backend new), and processes that exit between being found and being attached. Counts are compared
// with what the workloads record themselves.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

const std::string kCommon = std::string(SP_WORKLOAD_DIR) + "/../../scripts/lib/common.sh";

// A PostgreSQL cluster of the test's own (scripts/lib/common.sh's sp_pg_start: own directory, free port, trust
// authentication), so that restarting it disturbs nobody else; stopped and removed on destruction.
class OwnPostgres {
 public:
  explicit OwnPostgres(const std::string& dir) : dir_(dir + "/pg") {
    auto r = sp::test::run_command(
        {"/bin/bash", "-c", "source \"$0\" && sp_pg_start \"$1\" && echo \"port=$SP_PG_PORT\"", kCommon, dir_});
    std::smatch m;
    if (r.status != 0 || !std::regex_search(r.out, m, std::regex("port=([0-9]+)"))) {
      ADD_FAILURE() << "sp_pg_start failed: " << r.out;
      return;
    }
    env_.port = std::stoi(m[1]);
    env_.host = "127.0.0.1";
    env_.socket_dir = dir_;
    env_.user = "synapse";
    env_.db = "synapse";
  }
  ~OwnPostgres() { sp::test::run_command({"/bin/bash", "-c", "source \"$0\" && sp_pg_stop \"$1\"", kCommon, dir_}); }
  bool ok() const { return env_.port > 0; }
  const sp::test::PgEnv& env() const { return env_; }
  // A fast restart: every session is terminated, a new postmaster forks new backends.
  bool restart() {
    auto r = sp::test::run_command({"/bin/bash", "-c",
                                    "source \"$0\" && runuser -u postgres -- \"$SP_PG_BIN/pg_ctl\" -D \"$1/data\" "
                                    "-l \"$1/server.log\" -m fast -w -t 60 restart",
                                    kCommon, dir_});
    if (r.status != 0) ADD_FAILURE() << "pg_ctl restart: " << r.out;
    return r.status == 0;
  }
  int postmaster_pid() const {
    std::istringstream in(sp::test::read_text(dir_ + "/data/postmaster.pid"));
    int pid = 0;
    in >> pid;
    return pid;
  }

 private:
  std::string dir_;
  sp::test::PgEnv env_;
};

std::int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // the workloads' time.monotonic_ns()
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

class ChurnIT : public sp::test::AgentTest {
 protected:
  ChurnIT() : AgentTest("sp-churn-it") {}

  // verb -> count of one worker's server-side (PostgreSQL USDT) statements.
  std::map<std::string, double> server_counts(const std::string& worker) {
    std::map<std::string, double> out;
    std::istringstream in(metrics());
    std::string line;
    const std::regex re("^synapse_profiler_db_server_query_seconds_count\\{worker=\"" + worker +
                        "\",worker_app=\"[^\"]*\",verb=\"([^\"]*)\"\\} (\\S+)$");
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_match(line, m, re)) out[m[1]] += std::stod(m[2]);
    }
    return out;
  }

  double missed(const std::string& worker) {
    return sp::test::metric_value(metrics(), "synapse_profiler_db_server_missed_statements_total", {{"worker", worker}})
        .value_or(0);
  }

  double gc_count(const std::string& worker) {
    return sp::test::metric_value(metrics(), "synapse_profiler_gc_pause_seconds_count",
                                  {{"worker", worker}, {"generation", "0"}})
        .value_or(0);
  }
};

// Per verb, what the workload's own record says PostgreSQL executed for it: at least every statement that
// succeeded; at most those plus the ones that failed (a statement cut off by the restart may or may not have run).
struct Bounds {
  double low = 0, high = 0;
};
std::map<std::string, Bounds> statement_bounds(const std::string& truth_path, int& failed, int& ok_after,
                                               std::int64_t after_ns) {
  std::map<std::string, Bounds> out;
  failed = ok_after = 0;
  for (const auto& r : sp::test::truth_of_type(sp::test::read_truth(truth_path), "query")) {
    std::string verb = *r.text("verb");
    if (verb == "CREATE") verb = "other";  // the schema set-up: DDL is verb "other"
    const bool error = r.line.find("\"error\":") != std::string::npos;
    const bool begin = r.line.find("\"begin\":true") != std::string::npos;
    out[verb].high += 1;
    if (begin) out["BEGIN"].high += 1;
    if (error) {
      ++failed;
      continue;
    }
    out[verb].low += 1;
    if (begin) out["BEGIN"].low += 1;
    if (*r.integer("start_ns") > after_ns) ++ok_after;
  }
  return out;
}

}  // namespace

// A worker killed and started again (a new PID) is attached and counted again within two rescans of being up.
// (Exact counts across a restart: GcAgentIT.RestartedWorkerIsPickedUpAgainAndCounted.)
TEST_F(ChurnIT, RestartedWorkerIsAttachedWithinTwoRescans) {
  const auto rescan = 1s;
  sp::test::AgentProcess agent(dir_, "1s");
  ASSERT_TRUE(agent.running()) << agent.log();
  WorkloadSpec spec;
  spec.name = "churn_restart";
  spec.duration_s = 30;
  spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "0"};
  int previous_pid = 0;
  for (int round = 0; round < 3; ++round) {
    spec.metrics_port = 0;
    Workload w(spec, dir_);
    ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
    ASSERT_NE(w.pid(), previous_pid);
    previous_pid = w.pid();
    const auto up = std::chrono::steady_clock::now();
    auto counted = [&] {
      const std::string m = agent.metrics();
      return sp::test::metric_value(m, "synapse_profiler_probe_attached",
                                    {{"worker", "churn_restart"}, {"probe", "gc"}}) == 1.0 &&
             sp::test::metric_value(m, "synapse_profiler_worker_info",
                                    {{"worker", "churn_restart"}, {"pid", std::to_string(w.pid())}}) &&
             sp::test::metric_value(m, "synapse_profiler_gc_pause_seconds_count",
                                    {{"worker", "churn_restart"}, {"generation", "0"}})
                     .value_or(0) > 0;
    };
    // Two rescans, plus one read of the kernel maps (once a second; the GC counts come from them) and the time a
    // rescan itself takes on a loaded machine.
    ASSERT_TRUE(sp::test::wait_for(counted, 2 * rescan + 1500ms, 50ms)) << "round " << round << "\n" << agent.log();
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - up).count();
    std::cout << "round " << round << ": attached and counted " << took << " s after the worker was up\n";
    w.process().stop(SIGKILL);
  }
  EXPECT_TRUE(agent.stop()) << agent.log();
}

// PostgreSQL restarted under two running workers (one over TCP, one over the Unix socket): every backend is new,
// and each worker's server-side statements keep being counted for that worker, as its own record says.
TEST_F(ChurnIT, PostgresRestartedMidRunIsRemapped) {
  OwnPostgres pg(dir_);
  ASSERT_TRUE(pg.ok());
  const int first_postmaster = pg.postmaster_pid();
  std::vector<std::unique_ptr<Workload>> workers;
  for (bool unix_socket : {false, true}) {
    WorkloadSpec spec;
    spec.name = unix_socket ? "churn_pg_unix" : "churn_pg_tcp";
    spec.duration_s = 40;  // long enough on a loaded machine for both halves: counted before, then restarted
    spec.use_db = true;
    spec.pg = pg.env();
    spec.unix_socket = unix_socket;
    spec.extra_args = {"--gc-schedule", "none", "--io-rate", "0", "--query-rate", "30"};
    workers.push_back(std::make_unique<Workload>(spec, dir_));
  }
  for (auto& w : workers) ASSERT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
  for (auto& w : workers) {
    ASSERT_TRUE(sp::test::wait_for([&] { return server_counts(w->spec().name)["SELECT"] > 20; }, 25s))
        << w->spec().name << " not counted before the restart\n" << agent_log();
  }
  // Server-side statements seen plus those counted as missed (run before the probes were in a new backend).
  auto seen_or_missed = [&](const std::string& name) {
    double n = 0;
    for (const auto& [verb, c] : server_counts(name)) n += c;
    return n + missed(name);
  };
  std::map<std::string, double> before;
  for (auto& w : workers) before[w->spec().name] = seen_or_missed(w->spec().name);
  ASSERT_TRUE(pg.restart());
  const std::int64_t restarted_ns = monotonic_ns();
  EXPECT_NE(pg.postmaster_pid(), first_postmaster);
  for (auto& w : workers) {
    // Exit 1 is expected: the statements cut off by the restart are failures in the workload's book.
    ASSERT_TRUE(w->process().wait(60s)) << sp::test::read_text(w->log_path());
  }
  // The exits are noticed at the next rescan, and the records of the end drained: two of each, however long they take;
  // then the hub matches them to the client calls a grace period after they ended.
  ASSERT_TRUE(agent_.wait_rounds(2)) << agent_log();
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(agent_.wait_rounds(1)) << agent_log();
  for (auto& w : workers) {
    const std::string name = w->spec().name;
    int failed = 0, ok_after = 0;
    const auto bounds = statement_bounds(w->truth_path(), failed, ok_after, restarted_ns);
    EXPECT_GT(failed, 0) << name << " never noticed the restart";
    ASSERT_GT(ok_after, 50) << name << " ran too few statements after the restart";
    const auto server = server_counts(name);
    for (const auto& [verb, b] : bounds) {
      const double n = server.count(verb) ? server.at(verb) : 0;
      EXPECT_LE(n, b.high) << name << " verb " << verb << ": another client's statements counted for it";
    }
    for (const auto& [verb, n] : server) {
      if (!bounds.count(verb)) {
        EXPECT_EQ(n, 0) << name << ": statements it never sent, verb " << verb;
      }
    }
    // The new connections' backends were mapped and attached: every statement that succeeded after the restart was
    // seen, or run before its backend's probes were in place and counted as missed (a statement in flight when the
    // count was taken before the restart may fall on either side).
    const double after = seen_or_missed(name) - before[name];
    EXPECT_GE(after, ok_after - 2) << name << ": statements after the restart neither seen nor counted as missed";
    EXPECT_GT(server.at("SELECT"), 0);
    if (HasFailure()) {
      // What the agent decided about each backend (debug log), to tell a missed mapping from a lost record.
      std::istringstream log(agent_log());
      for (std::string line; std::getline(log, line);) {
        if (line.find("postgres: ") != std::string::npos && line.find("libbpf") == std::string::npos) {
          std::cout << line << "\n";
        }
      }
    }
    std::cout << name << ": " << failed << " statements cut off by the restart, " << ok_after
              << " succeeded after it; server-side statements seen or missed after it " << after << " (missed in all "
              << missed(name) << ")\n";
  }
  EXPECT_NE(agent_log().find("postgres: attached to"), std::string::npos);
}

namespace {

// A Synapse look-alike that exits the moment THIS agent (pid in argv[3]) opens its interpreter to plan the GC probe,
// the step right before attaching: it watches its own private copy of python3.11 with fanotify, which names the
// opener (other agents on the machine may open it too, and are ignored). Exit 0: opened by the agent; 3: nobody came
// within 20 s; 4: fanotify unavailable.
constexpr const char* kFlashModule = R"PY(
import ctypes, os, select, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
agent = int(sys.argv[3])
fd = libc.fanotify_init(0, os.O_RDONLY | os.O_CLOEXEC)  # FAN_CLASS_NOTIF
if fd < 0 or libc.fanotify_mark(fd, 1, 0x20, -100, sys.executable.encode()) < 0:  # FAN_MARK_ADD, FAN_OPEN
    sys.exit(4)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        break
    buf = os.read(fd, 4096)
    off = 0
    while off + 24 <= len(buf):
        length, _, _, _, _, efd, pid = struct.unpack_from("IBBHQii", buf, off)
        if efd >= 0:
            os.close(efd)
        if pid == agent:
            os._exit(0)
        off += length
os._exit(3)
)PY";

}  // namespace

// A worker whose processes have all been gone for --forget-after loses every series, so that the agent's memory and
// its exposition follow the workers of the recent past (a churning deployment names workers after pods); until then
// its totals stay, and another worker is untouched.
TEST_F(ChurnIT, WorkerGoneLongerThanForgetAfterLosesEverySeries) {
  if (!sp::test::test_postgres()) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
  const auto forget_after = 5s;
  sp::test::AgentProcess agent(dir_, "1s", {"--forget-after", "5s"});
  ASSERT_TRUE(agent.running()) << agent.log();
  auto start = [&](const std::string& name) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 60;
    spec.use_db = true;
    spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "5", "--direct-io", "--query-rate", "20"};
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  };
  auto stays = start("churn_stays");
  auto leaves = start("churn_leaves");
  // One series of each probe family (and the scrape) per worker.
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> series = {
      {"synapse_profiler_gc_pause_seconds_count", {}},
      {"synapse_profiler_db_client_query_seconds_count", {}},
      {"synapse_profiler_db_server_query_seconds_count", {}},
      {"synapse_profiler_disk_io_bytes_total", {{"via", "self"}}},
      {"synapse_profiler_synapse_up", {}},
  };
  auto counted = [&](const std::string& m, const std::string& worker) {
    for (auto [name, filter] : series) {
      filter["worker"] = worker;
      if (sp::test::sum_of(m, name, filter) <= 0) return false;
    }
    return true;
  };
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        const std::string m = agent.metrics();
        return counted(m, "churn_stays") && counted(m, "churn_leaves");
      },
      30s))
      << agent.metrics() << agent.log();

  const pid_t leaver = leaves->pid();
  leaves->process().stop(SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  leaves.reset();
  const std::string tag = "worker=\"churn_leaves\"";
  // Gone from worker_info at the next rescan, but its totals stay until --forget-after has passed.
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        return !sp::test::metric_value(agent.metrics(), "synapse_profiler_worker_info", {{"worker", "churn_leaves"}});
      },
      3s))
      << "pid " << leaver << " still listed\n" << agent.log();
  const double gc_kept = sp::test::sum_of(agent.metrics(), "synapse_profiler_gc_pause_seconds_count",
                                          {{"worker", "churn_leaves"}});
  EXPECT_GT(gc_kept, 0) << "the totals of a worker gone for less than --forget-after are kept";

  ASSERT_TRUE(sp::test::wait_for([&] { return agent.metrics().find(tag) == std::string::npos; },
                                 forget_after + 2s + 1500ms, 100ms))
      << "series of the gone worker remain:\n" << agent.metrics() << agent.log();
  const auto forgotten_after = std::chrono::steady_clock::now() - killed;
  EXPECT_GE(forgotten_after, forget_after) << "forgotten too early";
  EXPECT_NE(agent.log().find("worker churn_leaves has been gone for 5s: its series are dropped"), std::string::npos)
      << agent.log();

  // The worker that stayed keeps every series, and keeps counting.
  const std::string before = agent.metrics();
  EXPECT_TRUE(counted(before, "churn_stays")) << before;
  const double gc_before = sp::test::sum_of(before, "synapse_profiler_gc_pause_seconds_count", {{"worker", "churn_stays"}});
  EXPECT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::sum_of(agent.metrics(), "synapse_profiler_gc_pause_seconds_count",
                                {{"worker", "churn_stays"}}) > gc_before;
      },
      5s));
  stays->process().stop(SIGTERM);
  EXPECT_TRUE(agent.stop()) << agent.log();
}

// Processes that exit between discovery and attach, one after another: each is skipped with exactly one warning
// naming its PID (no per-family failures), the agent stays healthy, and a steady worker and a worker started after
// the churn are attached and counted.
TEST_F(ChurnIT, WorkerExitingBeforeAttachIsSkippedWithOneWarning) {
  namespace fs = std::filesystem;
  WorkloadSpec steady_spec;
  steady_spec.name = "churn_steady";
  steady_spec.duration_s = 60;
  steady_spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "0"};
  Workload steady(steady_spec, dir_);
  ASSERT_TRUE(steady.wait_ready()) << sp::test::read_text(steady.log_path());
  ASSERT_TRUE(sp::test::wait_for([&] { return gc_count("churn_steady") > 0; }, 60s)) << agent_log();

  const std::string flash = dir_ + "/flash";
  fs::create_directories(flash + "/synapse/app");
  std::ofstream(flash + "/synapse/__init__.py");
  std::ofstream(flash + "/synapse/app/__init__.py");
  std::ofstream(flash + "/synapse/app/generic_worker.py") << kFlashModule;
  std::ofstream(flash + "/flash.yaml") << "worker_name: churn_flash\nworker_app: synapse.app.generic_worker\n";
  fs::copy_file("/usr/bin/python3.11", flash + "/python3.11");
  fs::permissions(flash + "/python3.11", fs::perms::owner_all);

  constexpr int kRounds = 20;
  std::vector<int> pids;
  for (int i = 0; i < kRounds; ++i) {
    sp::test::Process p({flash + "/python3.11", "-m", "synapse.app.generic_worker", "-c", flash + "/flash.yaml",
                         std::to_string(agent_.pid())},
                        dir_ + "/flash.log", flash);
    auto st = p.wait(25s);
    ASSERT_TRUE(st && WIFEXITED(*st)) << sp::test::read_text(dir_ + "/flash.log");
    ASSERT_EQ(WEXITSTATUS(*st), 0) << "round " << i << ": the agent never opened its interpreter\n" << agent_log();
    pids.push_back(p.pid());
    ASSERT_TRUE(agent_.running()) << "round " << i << "\n" << agent_log();
  }
  std::this_thread::sleep_for(1500ms);  // the last one's removal
  ASSERT_TRUE(sp::test::http_get(agent_.port(), "/healthz")) << agent_log();

  const std::string log = agent_log();
  int skipped = 0;
  for (const int pid : pids) {
    const std::string p = "pid " + std::to_string(pid);
    const std::string skip_line = "warning: Synapse process " + p + " worker churn_flash exited before it could be "
                                  "attached; skipped";
    int warnings = 0;
    std::istringstream in(log);
    std::string line;
    bool attached = false;
    while (std::getline(in, line)) {
      const std::regex names_pid("\\b" + p + "\\b");
      if (!std::regex_search(line, names_pid)) continue;
      if (line.find(" warning: ") != std::string::npos) ++warnings;
      if (line.find("gc: attached to worker churn_flash (" + p + ")") != std::string::npos) attached = true;
    }
    const bool skip = log.find(skip_line) != std::string::npos;
    skipped += skip;
    // Either the exit beat the attach (one warning, that one), or the attach won the race (no warning at all).
    if (skip) {
      EXPECT_EQ(warnings, 1) << p << "\n" << log;
    } else {
      EXPECT_TRUE(attached) << p << " neither attached nor skipped\n" << log;
      EXPECT_EQ(warnings, 0) << p << "\n" << log;
    }
  }
  std::cout << skipped << " of " << kRounds << " processes exited before the attach\n";
  EXPECT_GT(skipped, 0) << "the exit never beat the attach: the test no longer tests the skip\n" << log;

  // Nothing of churn_flash is left; the steady worker kept being counted, a new one is attached and counted.
  EXPECT_FALSE(sp::test::metric_value(metrics(), "synapse_profiler_worker_info", {{"worker", "churn_flash"}}));
  const double steady_before = gc_count("churn_steady");
  WorkloadSpec late_spec = steady_spec;
  late_spec.name = "churn_late";
  late_spec.duration_s = 30;
  Workload late(late_spec, dir_);
  ASSERT_TRUE(late.wait_ready()) << sp::test::read_text(late.log_path());
  EXPECT_TRUE(sp::test::wait_for([&] { return gc_count("churn_late") > 3; }, 30s)) << agent_log();
  EXPECT_GT(gc_count("churn_steady"), steady_before);
}
