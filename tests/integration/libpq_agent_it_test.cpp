// libpq client-side latency end to end through the agent binary, against the test PostgreSQL: per-verb counts equal
// the workload's own record of every statement it sent, latencies agree with its own clock, each worker gets only
// its own queries, and no literal ever reaches /metrics or the log.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "core/proc/discovery.h"
#include "core/python/elf_file.h"
#include "core/proc/socket_inventory.h"
#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

struct VerbTruth {
  double count = 0;
  double exec_seconds = 0;  // the workload's own timing of cursor.execute / commit, BEGIN included
};

// Per verb, what libpq must have seen after the gate opened: every statement, plus the BEGIN psycopg2 sends before a
// transaction's first.
std::map<std::string, VerbTruth> truth_queries(const std::string& truth_path, double& total_exec_seconds) {
  std::map<std::string, VerbTruth> out;
  total_exec_seconds = 0;
  auto all = sp::test::read_truth(truth_path);
  auto gate = sp::test::truth_of_type(all, "gate");
  std::int64_t gate_ns = gate.empty() ? 0 : *gate.front().integer("open_ns");
  for (const auto& r : sp::test::truth_of_type(all, "query")) {
    if (*r.integer("start_ns") < gate_ns) continue;  // schema set-up before the gate: in the baseline
    std::string verb = *r.text("verb");
    out[verb].count += 1;
    if (r.line.find("\"begin\":true") != std::string::npos) out["BEGIN"].count += 1;
    total_exec_seconds += static_cast<double>(*r.integer("exec_end_ns") - *r.integer("exec_start_ns")) / 1e9;
  }
  return out;
}

// The byte at `pid`'s postgresql:query__start site: 0xcc once a uprobe's breakpoint is written into that process (a
// nop otherwise); nullopt when it cannot be read. The site: the note's link-time address plus the load bias of the
// binary's mapping at file offset 0 (PIE: its first PT_LOAD starts at 0).
std::optional<std::uint8_t> query_start_byte(int pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  const int fd = ::open((proc + "/exe").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string error;
  auto elf = sp::ElfFile::from_fd(fd, error);
  ::close(fd);
  if (!elf) return std::nullopt;
  std::uint64_t pc = 0;
  for (const auto& n : elf->usdt_notes()) {
    if (n.provider == "postgresql" && n.name == "query__start") pc = n.pc;
  }
  std::uint64_t first_vaddr = UINT64_MAX;
  for (const auto& seg : elf->segments()) {
    if (seg.type == 1 /* PT_LOAD */) first_vaddr = std::min(first_vaddr, seg.vaddr);
  }
  char exe[4096];
  const ssize_t n = ::readlink((proc + "/exe").c_str(), exe, sizeof exe - 1);
  if (pc == 0 || first_vaddr == UINT64_MAX || n <= 0) return std::nullopt;
  const std::string exe_path(exe, static_cast<std::size_t>(n));
  std::istringstream maps(sp::test::read_text(proc + "/maps"));
  std::uint64_t base = 0;
  for (std::string line; std::getline(maps, line);) {
    unsigned long long start = 0, end = 0, offset = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx", &start, &end, perms, &offset) != 4) continue;
    if (offset == 0 && line.size() >= exe_path.size() &&
        line.compare(line.size() - exe_path.size(), exe_path.size(), exe_path) == 0) {
      base = start;
      break;
    }
  }
  if (base == 0) return std::nullopt;
  const int mem = ::open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return std::nullopt;
  std::uint8_t byte = 0;
  const ssize_t got = ::pread(mem, &byte, 1, static_cast<off_t>(base + pc - first_vaddr));
  ::close(mem);
  if (got != 1) return std::nullopt;
  return byte;
}

class LibpqAgentIT : public sp::test::AgentTest {
 protected:
  LibpqAgentIT() : AgentTest("sp-libpq-agent-it", /*needs_postgres=*/true) {}
  std::string gate(const std::string& name) const { return dir_ + "/" + name + ".gate"; }

  std::unique_ptr<Workload> start(const std::string& name, bool unix_socket, std::vector<std::string> extra = {}) {
    // Each round of the request mix also sleeps 20 ms in PostgreSQL: the workload times cursor.execute(), which
    // includes psycopg2's and Python's own work around libpq (tens of microseconds per call); with real server time in
    // the mix that overhead stays well inside the 5 % the comparison allows, as it would on a busy homeserver.
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 3;
    spec.use_db = true;
    spec.unix_socket = unix_socket;
    spec.extra_args = {"--gc-schedule", "none", "--io-rate", "0", "--query-rate", "40", "--slow-query", "0.02",
                       "--start-gate", gate(name)};
    spec.extra_args.insert(spec.extra_args.end(), extra.begin(), extra.end());
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  }

  // verb -> {count, sum seconds} of one worker, all tables, from the client-side (libpq) or server-side family.
  std::map<std::string, std::array<double, 2>> per_verb(const std::string& worker, bool server = false) {
    std::map<std::string, std::array<double, 2>> out;
    std::istringstream in(metrics());
    std::string line;
    std::regex re(std::string("^synapse_profiler_db_") + (server ? "server" : "client") +
                  "_query_seconds_(count|sum)\\{worker=\"" + worker +
                  "\",worker_app=\"[^\"]*\",verb=\"([^\"]*)\"(,table=\"[^\"]*\")?\\} (\\S+)$");
    while (std::getline(in, line)) {
      std::smatch m;
      if (!std::regex_match(line, m, re)) continue;
      out[m[2]][m[1] == "count" ? 0 : 1] += std::stod(m[4]);
    }
    return out;
  }

  using PerVerb = std::map<std::string, std::array<double, 2>>;
  struct Baseline {
    PerVerb client, server;
  };

  Baseline attach_and_go(Workload& w) {
    auto attached = [&] {
      return sp::test::metric_value(metrics(), "synapse_profiler_probe_attached",
                                    {{"worker", w.spec().name}, {"probe", "libpq"}}) == 1.0;
    };
    EXPECT_TRUE(sp::test::wait_for(attached, 10s)) << agent_log();
    // The server-side probes in every backend serving it (connected before the gate): nothing after it is missed.
    auto server_attached = [&] {
      return sp::test::metric_value(metrics(), "synapse_profiler_probe_attached",
                                    {{"worker", w.spec().name}, {"probe", "postgres"}}) == 1.0;
    };
    EXPECT_TRUE(sp::test::wait_for(server_attached, 30s)) << agent_log();
    std::this_thread::sleep_for(sp::test::scaled(600ms));  // one agent poll (every 250 ms) past anything sent before the gate
    Baseline before{per_verb(w.spec().name), per_verb(w.spec().name, true)};
    std::ofstream(gate(w.spec().name)).put('\n');
    return before;
  }

  void finish(Workload& w) {
    auto st = w.process().wait(30s);
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w.log_path());
  }

  static PerVerb minus(PerVerb after, const PerVerb& before) {
    for (auto& [verb, v] : after) {
      if (auto it = before.find(verb); it != before.end()) {
        v[0] -= it->second[0];
        v[1] -= it->second[1];
      }
    }
    return after;
  }

  void expect_matches(Workload& w, const Baseline& before) {
    std::this_thread::sleep_for(sp::test::scaled(800ms));
    auto after = minus(per_verb(w.spec().name), before.client);
    auto server = minus(per_verb(w.spec().name, true), before.server);
    double truth_seconds = 0;
    auto truth = truth_queries(w.truth_path(), truth_seconds);
    ASSERT_GT(truth["SELECT"].count, 20) << "the workload ran too few queries to compare";
    double measured_seconds = 0, server_seconds = 0;
    for (const auto& [verb, v] : after) measured_seconds += v[1];
    for (const auto& [verb, v] : server) server_seconds += v[1];
    for (const auto& [verb, t] : truth) {
      sp::test::record_compared(w.spec().name + "." + verb + ".client", after[verb][0], t.count);
      sp::test::record_compared(w.spec().name + "." + verb + ".server", server[verb][0], t.count);
      EXPECT_EQ(after[verb][0], t.count) << w.spec().name << " client side, verb " << verb;
      // PostgreSQL executed each of them in a backend serving this worker (and no other worker's).
      EXPECT_EQ(server[verb][0], t.count) << w.spec().name << " server side, verb " << verb;
    }
    for (const auto& [verb, v] : server) {
      if (!truth.count(verb)) {
        EXPECT_EQ(v[0], 0) << w.spec().name << ": server-side queries with verb " << verb;
      }
    }
    // Execution inside PostgreSQL is part of the libpq round trip.
    EXPECT_LE(server_seconds, measured_seconds) << w.spec().name;
    EXPECT_GT(server_seconds, 0.5 * measured_seconds) << w.spec().name << ": pg_sleep dominates both";
    for (const auto& [verb, v] : after) {
      if (!truth.count(verb)) {
        EXPECT_EQ(v[0], 0) << w.spec().name << ": queries with verb " << verb;
      }
    }
    // libpq's round trip is what cursor.execute() spends minus psycopg2's own work around it.
    EXPECT_LE(measured_seconds, truth_seconds) << w.spec().name;
    EXPECT_NEAR(measured_seconds, truth_seconds, 0.05 * truth_seconds) << w.spec().name;
  }

};

}  // namespace

TEST_F(LibpqAgentIT, TcpAndUnixSocketWorkersCountEveryQueryPerVerb) {
  auto tcp = start("db_tcp", false);
  auto unix_sock = start("db_unix", true);
  auto tcp_before = attach_and_go(*tcp);
  auto unix_before = attach_and_go(*unix_sock);
  finish(*tcp);
  finish(*unix_sock);
  expect_matches(*tcp, tcp_before);
  expect_matches(*unix_sock, unix_before);
}

TEST_F(LibpqAgentIT, SecretLiteralsNeverReachMetricsOrLog) {
  auto w = start("db_secret", false);
  auto before = attach_and_go(*w);
  finish(*w);
  std::this_thread::sleep_for(sp::test::scaled(800ms));
  std::string sql = sp::test::read_text(w->truth_path());
  ASSERT_NE(sql.find("syt_s3cr3t_token"), std::string::npos) << "the workload did not send its secret literal";
  std::string m = metrics();
  EXPECT_EQ(m.find("syt_"), std::string::npos);
  EXPECT_EQ(m.find("s3cr3t"), std::string::npos);
  std::string log = agent_log();
  EXPECT_EQ(log.find("syt_"), std::string::npos);
  EXPECT_EQ(log.find("s3cr3t"), std::string::npos);
  EXPECT_NE(m.find("synapse_profiler_db_client_query_seconds"), std::string::npos);
}

// A lock held by another client (not a Synapse worker) makes the worker's backends wait: the waits show up under
// that worker, bounded by the holder's own record of how long it held the lock.
TEST_F(LibpqAgentIT, LockWaitsAreChargedToTheWaitingWorker) {
  auto w = start("db_locked", false);
  attach_and_go(*w);
  auto pg = *sp::test::test_postgres();
  auto held = sp::test::hold_users_table_lock(pg, dir_ + "/held.txt");
  ASSERT_TRUE(held);
  const double held_seconds = *held;
  finish(*w);
  std::this_thread::sleep_for(sp::test::scaled(800ms));
  std::string m = metrics();
  auto count = sp::test::metric_value(m, "synapse_profiler_db_lock_wait_seconds_count", {{"worker", "db_locked"}});
  auto sum = sp::test::metric_value(m, "synapse_profiler_db_lock_wait_seconds_sum", {{"worker", "db_locked"}});
  ASSERT_TRUE(count && sum) << m;
  // Every hold blocks at least one of the worker's transactions (it touches `users` 20 times a second); at most its
  // three connections wait at once.
  EXPECT_GE(*count, 3);
  EXPECT_GT(*sum, 0.5 * held_seconds);
  EXPECT_LT(*sum, 3 * held_seconds + 0.1);
  // The holder waited for nothing.
  auto other = sp::test::metric_value(m, "synapse_profiler_db_lock_wait_seconds_sum", {{"worker", "other"}});
  EXPECT_LT(other.value_or(0), 0.05);
}

// Over a worker's whole life, from its connections' set-up (psycopg2's own statements included) to its exit: the
// server-side probes are attached to each of its backends only once the agent has mapped it, so the first statements
// of a connection can run unseen; each of those is counted as missed. What the server side saw plus what it counts as
// missed is every call the client side saw (libpq is attached first, in the same pass), and never more than the
// worker recorded sending, per verb.
TEST_F(LibpqAgentIT, ServerSideSeesOrCountsAsMissedEveryStatementOverTheWorkersLife) {
  std::ofstream(gate("db_life")).put('\n');  // no waiting: the whole life counts
  auto w = start("db_life", false);
  finish(*w);
  ASSERT_TRUE(agent_.wait_rounds(3));  // the exit is noticed at a rescan; records of the end are drained
  std::this_thread::sleep_for(sp::test::scaled(1500ms));  // and matched by the hub a grace period after they ended
  ASSERT_TRUE(agent_.wait_rounds(2));
  std::map<std::string, double> expected;
  double expected_total = 0;
  for (const auto& r : sp::test::truth_of_type(sp::test::read_truth(w->truth_path()), "query")) {
    std::string verb = *r.text("verb");
    if (verb == "CREATE") verb = "other";  // the schema set-up: DDL is verb "other"
    expected[verb] += 1;
    expected_total += 1;
    if (r.line.find("\"begin\":true") != std::string::npos) {
      expected["BEGIN"] += 1;
      expected_total += 1;
    }
  }
  ASSERT_GT(expected["other"], 0) << "the workload's schema set-up is part of its life";
  const auto m = metrics();
  auto server = per_verb("db_life", true);
  auto client = per_verb("db_life");
  double server_total = 0, client_total = 0;
  for (const auto& [verb, v] : server) {
    server_total += v[0];
    EXPECT_LE(v[0], expected[verb]) << "server side, verb " << verb;
  }
  for (const auto& [verb, v] : client) client_total += v[0];
  auto missed =
      sp::test::metric_value(m, "synapse_profiler_db_server_missed_statements_total", {{"worker", "db_life"}});
  ASSERT_TRUE(missed) << m;
  // A call in flight when libpq was attached is not the client side's; its statement may be the server side's.
  sp::test::record_compared("db_life.server_seen_plus_missed", server_total + *missed, client_total);
  EXPECT_NEAR(server_total + *missed, client_total, 1) << "seen " << server_total << ", missed " << *missed;
  EXPECT_LE(client_total, expected_total);
  EXPECT_GT(server_total, 0.5 * expected_total);
}

// The server-side probes are attached per backend: a backend serving a client that is not a profiled worker (another
// application on the same cluster) never has a breakpoint written into it (the query__start site in its memory stays
// a nop), while the backends of the profiled worker beside it have one and its statements stay exact.
TEST_F(LibpqAgentIT, BackendsOfOtherClientsAreNotAttached) {
  constexpr const char* kOtherClient = R"PY(
import sys, time, psycopg2
host, port, user, db, gate = sys.argv[1:6]
conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=db)
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT pg_backend_pid()")
print("backend", cur.fetchone()[0], flush=True)
import os
while not os.path.exists(gate):
    time.sleep(0.05)
for i in range(300):
    cur.execute("SELECT %s + 1", (i,))
print("done", flush=True)
time.sleep(300)
)PY";
  auto pg = *sp::test::test_postgres();
  const std::string other_log = dir_ + "/other_client.log";
  sp::test::Process other({"/usr/bin/python3.11", "-c", kOtherClient, "127.0.0.1", std::to_string(pg.port), pg.user,
                           pg.db, gate("db_probed")},
                          other_log);
  auto w = start("db_probed", false);
  int other_backend = 0;
  ASSERT_TRUE(sp::test::wait_for(
      [&] { return std::sscanf(sp::test::read_text(other_log).c_str(), "backend %d", &other_backend) == 1; }, 20s))
      << sp::test::read_text(other_log);
  auto before = attach_and_go(*w);
  ASSERT_TRUE(sp::test::wait_for([&] { return sp::test::read_text(other_log).find("done") != std::string::npos; },
                                 30s))
      << sp::test::read_text(other_log);
  // The worker's backends: the postgres processes whose client socket it owns.
  sp::BackendMapper mapper("/proc");
  std::vector<int> backends;
  {
    sp::DiscoveryOptions options;
    options.pids = {w->pid()};
    for (const auto& p : sp::scan(options).postgres) {
      if (!p.postmaster) backends.push_back(p.key.pid);
    }
  }
  std::string error;
  const auto links = mapper.map({w->pid()}, backends, error);
  ASSERT_FALSE(links.empty()) << error;
  auto trapped = [](int pid) { return query_start_byte(pid) == std::uint8_t{0xcc}; };
  for (const auto& l : links) {
    EXPECT_TRUE(sp::test::wait_for([&] { return trapped(l.backend_pid); }, 10s))
        << "no breakpoint in worker backend " << l.backend_pid;
  }
  // Another tracer attached to the postgres binary for every process (an older agent on this machine) writes its
  // breakpoints into every backend, the postmaster too: then the other client's backend proves nothing.
  int postmaster = 0;
  {
    std::istringstream stat(sp::test::read_text("/proc/" + std::to_string(other_backend) + "/stat"));
    std::string skip;
    stat >> skip >> skip >> skip >> postmaster;
  }
  ASSERT_TRUE(query_start_byte(other_backend).has_value()) << "cannot read backend " << other_backend;
  if (trapped(postmaster)) {
    std::cout << "note: postmaster " << postmaster << " has a breakpoint too: another tracer attached to every "
              << "postgres process; the other client's backend is not checked\n";
  } else {
    EXPECT_FALSE(trapped(other_backend))
        << "backend " << other_backend << " of a client that is not a worker has a breakpoint";
  }
  finish(*w);
  expect_matches(*w, before);
  other.stop(SIGKILL);
}

// Queries held open across long GC pauses: the query time the agent sees overlapping the pauses agrees with the
// workload's own computation from its own clock (within 10 %); a worker that collects but sends no queries has none.
TEST_F(LibpqAgentIT, QueryTimeOverlappedByGcPausesMatchesTheWorkload) {
  // Every second: a 1 s pg_sleep query, and 250 ms into it a full collection of a 1M-object heap (well under 750 ms
  // here), so each pause lies inside its query's libpq call.
  auto held = start("db_gc_hold", false, {"--gc-schedule", "none", "--query-rate", "0", "--gc-hold-query", "1.0"});
  auto idle = start("db_gc_only", false, {"--gc-schedule", "0:10"});
  auto overlap = [&](const std::string& worker) {
    return sp::test::metric_value(metrics(), "synapse_profiler_db_query_gc_overlap_seconds_total",
                                  {{"worker", worker}})
        .value_or(0);
  };
  attach_and_go(*held);
  attach_and_go(*idle);
  // A known worker's counter exists from its discovery on, at 0 (a dashboard panel shows 0, not "No data").
  EXPECT_TRUE(sp::test::metric_value(metrics(), "synapse_profiler_db_query_gc_overlap_seconds_total",
                                     {{"worker", "db_gc_only"}})
                  .has_value());
  double held_before = overlap("db_gc_hold");
  double idle_before = overlap("db_gc_only");
  finish(*held);
  finish(*idle);
  std::this_thread::sleep_for(sp::test::scaled(1500ms));
  auto truth = sp::test::truth_of_type(sp::test::read_truth(held->truth_path()), "summary");
  ASSERT_EQ(truth.size(), 1u);
  double expected = static_cast<double>(*truth[0].integer("gc_overlap_exec_ns")) / 1e9;
  ASSERT_GT(expected, 0.05) << "the workload did not hold queries across pauses";
  EXPECT_NEAR(overlap("db_gc_hold") - held_before, expected, 0.1 * expected);
  EXPECT_EQ(overlap("db_gc_only") - idle_before, 0);
  EXPECT_GT(sp::test::metric_value(metrics(), "synapse_profiler_gc_pause_seconds_count",
                                   {{"worker", "db_gc_only"}, {"generation", "0"}})
                .value_or(0),
            10)
      << "the idle worker did collect";
}
