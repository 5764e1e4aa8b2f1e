// Per-transaction (desc) attribution end to end through the agent binary, against the test PostgreSQL: the
// workload's own record of every statement it sent, with the desc of the new_transaction it ran in (or none for the
// statements it sends outside any transaction), must equal the agent's per-desc counts exactly. A worker whose
// interpreter the offset tables do not know has attribution off, says so, and still gets its client-side latency.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

using Counts = std::map<std::string, double>;

// desc -> libpq calls after the gate: each recorded statement, plus the BEGIN psycopg2 sent before a transaction's
// first. Statements outside any transaction (desc null) are "unattributed".
Counts truth_per_desc(const std::string& truth_path) {
  Counts out;
  auto all = sp::test::read_truth(truth_path);
  auto gate = sp::test::truth_of_type(all, "gate");
  std::int64_t gate_ns = gate.empty() ? 0 : *gate.front().integer("open_ns");
  for (const auto& r : sp::test::truth_of_type(all, "query")) {
    if (*r.integer("start_ns") < gate_ns) continue;
    auto desc = r.text("desc");
    const std::string key = desc ? *desc : "unattributed";
    out[key] += 1;
    if (r.line.find("\"begin\":true") != std::string::npos) out[key] += 1;
  }
  return out;
}

class DescAgentIT : public sp::test::AgentTest {
 protected:
  DescAgentIT()
      : AgentTest("sp-desc-agent-it", /*needs_postgres=*/true, {"--scrape-interval", "1s", "--window", "60s"}) {}
  std::string gate(const std::string& name) const { return dir_ + "/" + name + ".gate"; }

  std::unique_ptr<Workload> start(const std::string& name, const std::string& python = "/usr/bin/python3.11",
                                  std::vector<std::string> extra = {}) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 3;
    spec.use_db = true;
    spec.python = python;
    spec.extra_args = {"--gc-schedule", "none", "--io-rate", "0", "--query-rate", "60", "--bare-queries", "1",
                       "--slow-query", "0.01", "--start-gate", gate(name)};
    spec.extra_args.insert(spec.extra_args.end(), extra.begin(), extra.end());
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  }

  Counts per_desc(const std::string& worker, const std::string& family = "synapse_profiler_db_desc_queries_total",
                  const std::string& label = "desc") {
    Counts out;
    std::istringstream in(metrics());
    std::string line;
    std::regex re("^" + family + "\\{worker=\"" + worker + "\",worker_app=\"[^\"]*\"," + label +
                  "=\"([^\"]*)\"\\} (\\S+)$");
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_match(line, m, re)) out[m[1]] += std::stod(m[2]);
    }
    return out;
  }

  std::optional<double> attached(const std::string& worker, const std::string& probe) {
    return sp::test::metric_value(metrics(), "synapse_profiler_probe_attached", {{"worker", worker}, {"probe", probe}});
  }

  Counts attach_and_go(Workload& w, bool expect_desc_active) {
    const std::string name = w.spec().name;
    EXPECT_TRUE(sp::test::wait_for([&] { return attached(name, "libpq") == 1.0; }, 10s)) << agent_log();
    // The server-side probes in the backends serving it (per-desc server time counts from the gate on).
    EXPECT_TRUE(sp::test::wait_for([&] { return attached(name, "postgres") == 1.0; }, 30s)) << agent_log();
    EXPECT_EQ(attached(name, "libpq_desc"), expect_desc_active ? 1.0 : 0.0) << agent_log();
    std::this_thread::sleep_for(sp::test::scaled(600ms));  // one agent poll past anything sent before the gate
    Counts before = per_desc(name);
    std::ofstream(gate(name)).put('\n');
    return before;
  }

  void finish(Workload& w) {
    auto st = w.process().wait(30s);
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w.log_path());
    std::this_thread::sleep_for(sp::test::scaled(800ms));
  }

  std::error_code ec_;

  static Counts minus(Counts after, const Counts& before) {
    for (auto& [k, v] : after) {
      if (auto it = before.find(k); it != before.end()) v -= it->second;
    }
    std::erase_if(after, [](const auto& kv) { return kv.second == 0; });
    return after;
  }
};

// Debian's python3.11 (non-PIE executable, glibc 2.36: thread states through the TSS key).
TEST_F(DescAgentIT, PerDescCountsEqualTheWorkloadsOwnAndBareQueriesAreUnattributed) {
  auto w = start("desc_311");
  auto before = attach_and_go(*w, true);
  finish(*w);
  Counts got = minus(per_desc("desc_311"), before);
  Counts want = truth_per_desc(w->truth_path());
  ASSERT_GT(want["get_users_in_room"], 10) << "the workload ran too few transactions to compare";
  ASSERT_GT(want["unattributed"], 10) << "the workload sent too few statements outside transactions";
  for (const auto& [desc, n] : want) {
    auto it = got.find(desc);
    sp::test::record_compared("desc_311." + desc, it == got.end() ? 0 : it->second, n);
  }
  EXPECT_EQ(got, want);
  for (const auto& [desc, n] : got) std::cout << "  desc " << desc << ": " << n << " libpq calls\n";
  // Every query went through the walk; the unattributed ones found no new_transaction frame, not a failure.
  Counts lookups = minus(per_desc("desc_311", "synapse_profiler_db_desc_lookups_total", "result"), {});
  EXPECT_EQ(lookups["no_thread_state"], 0);
  EXPECT_EQ(lookups["bad_value"], 0);
  EXPECT_EQ(lookups["off"], 0);
  for (const auto& [result, n] : lookups) std::cout << "  walk " << result << ": " << n << "\n";
  EXPECT_NE(agent_log().find("attributed to Synapse transactions (CPython 3.11"), std::string::npos) << agent_log();
}

// PostgreSQL's side per desc: each statement the worker's backends executed is matched to the client call that sent
// it (by time and the backend's learned thread), so per desc the server-side statements equal the workload's own
// count of what it sent, none unmatched; server seconds never exceed the client's.
TEST_F(DescAgentIT, ServerSideStatementsAreSplitByTheTransactionThatSentThem) {
  auto w = start("desc_server");
  const std::string name = "desc_server";
  ASSERT_TRUE(sp::test::wait_for([&] { return attached(name, "libpq") == 1.0; }, 10s)) << agent_log();
  ASSERT_TRUE(sp::test::wait_for([&] { return attached(name, "postgres") == 1.0; }, 30s)) << agent_log();
  std::this_thread::sleep_for(sp::test::scaled(1600ms));  // past the matcher's grace for anything sent before the gate
  Counts server_before = per_desc(name, "synapse_profiler_db_desc_server_statements_total");
  Counts client_before = per_desc(name, "synapse_profiler_db_desc_query_seconds_total");
  Counts server_s_before = per_desc(name, "synapse_profiler_db_desc_server_seconds_total");
  std::ofstream(gate(name)).put('\n');
  finish(*w);
  std::this_thread::sleep_for(sp::test::scaled(1600ms));
  Counts got = minus(per_desc(name, "synapse_profiler_db_desc_server_statements_total"), server_before);
  Counts want = truth_per_desc(w->truth_path());
  ASSERT_GT(want["slow_query"], 10);
  EXPECT_EQ(got, want);
  EXPECT_EQ(got.count("unmatched"), 0u);
  Counts client_s = minus(per_desc(name, "synapse_profiler_db_desc_query_seconds_total"), client_before);
  Counts server_s = minus(per_desc(name, "synapse_profiler_db_desc_server_seconds_total"), server_s_before);
  // slow_query's pg_sleep(0.01) runs in the server: most of its client time is server time.
  EXPECT_GT(server_s["slow_query"], 0.5 * client_s["slow_query"]);
  for (const auto& [desc, s] : server_s) EXPECT_LE(s, client_s[desc]) << desc;
}

// The pass-through join: per desc, libpq seconds over Synapse's own transaction seconds. slow_query's transaction is
// one 10 ms pg_sleep plus BEGIN and COMMIT: nearly all of it is spent in libpq, and never more than all of it.
TEST_F(DescAgentIT, LibpqRatioComparesWithSynapsesTransactionTime) {
  auto w = start("desc_ratio", "/usr/bin/python3.11", {"--linger", "4"});
  attach_and_go(*w, true);
  auto ratio = [&] {
    return sp::test::metric_value(metrics(), "synapse_profiler_db_desc_libpq_ratio",
                                  {{"worker", "desc_ratio"}, {"desc", "slow_query"}});
  };
  ASSERT_TRUE(sp::test::wait_for([&] { return ratio().has_value(); }, 15s)) << metrics();
  finish(*w);
  auto r = ratio();
  ASSERT_TRUE(r);
  EXPECT_GT(*r, 0.6);
  EXPECT_LE(*r, 1.02);
}

// An interpreter the tables do not know: attribution reports itself off (metric, log), every query is counted as
// unattributed, and the client-side latency series are still there. The workload runs Debian's 3.11 under a file
// name that says 3.9: the version is decided from the name first, as for any libpython3.9.so or python3.9.
TEST_F(DescAgentIT, UnknownInterpreterVersionTurnsAttributionOffOnly) {
  const std::string fake = dir_ + "/bin/python3.9";
  std::filesystem::create_directories(dir_ + "/bin");
  std::filesystem::copy_file("/usr/bin/python3.11", fake);
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  auto w = start("desc_old", fake);
  auto before = attach_and_go(*w, false);
  finish(*w);
  Counts got = minus(per_desc("desc_old"), before);
  Counts want = truth_per_desc(w->truth_path());
  double total = 0;
  for (const auto& [desc, n] : want) total += n;
  ASSERT_GT(total, 50);
  EXPECT_EQ(got, (Counts{{"unattributed", total}}));
  EXPECT_NE(agent_log().find("3.9"), std::string::npos);
  EXPECT_NE(agent_log().find("has no offset table"), std::string::npos) << agent_log();
  auto client = sp::test::metric_value(metrics(), "synapse_profiler_db_client_query_seconds_count",
                                       {{"worker", "desc_old"}, {"verb", "SELECT"}});
  ASSERT_TRUE(client);
  EXPECT_GT(*client, 0);
}

}  // namespace

namespace {

// `workers` and `doctor` say per worker whether attribution is on, and why not (same planner as the agent).
TEST_F(DescAgentIT, WorkersAndDoctorSayWhetherAttributionIsOn) {
  const std::string fake = dir_ + "/bin/python3.9";
  std::filesystem::create_directories(dir_ + "/bin");
  std::filesystem::copy_file("/usr/bin/python3.11", fake);
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  auto on = start("desc_on");
  auto off = start("desc_off", fake);
  const std::string on_pid = std::to_string(on->pid()), off_pid = std::to_string(off->pid());
  auto json = sp::test::run_command({SP_BINARY, "workers", "--json", "--pid", on_pid, "--pid", off_pid});
  ASSERT_EQ(json.status, 0) << json.out;
  std::regex on_re("\"worker\": \"desc_on\"[^}]*\"desc_attribution\": true, \"desc_detail\": \"CPython 3\\.11");
  std::regex off_re("\"worker\": \"desc_off\"[^}]*\"desc_attribution\": false, \"desc_detail\": \"CPython 3\\.9[^\"]*"
                    "has no offset table");
  EXPECT_TRUE(std::regex_search(json.out, on_re)) << json.out;
  EXPECT_TRUE(std::regex_search(json.out, off_re)) << json.out;
  auto doctor = sp::test::run_command({SP_BINARY, "doctor", "--pid", on_pid, "--pid", off_pid});
  EXPECT_NE(doctor.out.find("[ok  ] worker desc_on (pid " + on_pid + "): queries per Synapse transaction (desc): "
                            "CPython 3.11"),
            std::string::npos)
      << doctor.out;
  EXPECT_NE(doctor.out.find("[warn] worker desc_off (pid " + off_pid + "): queries per Synapse transaction (desc): "
                            "CPython 3.9"),
            std::string::npos)
      << doctor.out;
  std::ofstream(gate("desc_on")).put('\n');
  std::ofstream(gate("desc_off")).put('\n');
  finish(*on);
  finish(*off);
}

}  // namespace

namespace {

// The other CPython versions the tables cover, as pyenv builds (shared libpython, PIE: addresses through the load
// base). They have no psycopg2 of their own: 3.11 borrows Debian's (same ABI), the others use the ctypes stand-in in
// tests/workload/pqshim, which calls PQexec the way psycopg2 does (GIL released, one call per statement). The
// interpreters are optional: without one the test is skipped and says so.
std::string pyenv_python(const std::string& minor) {
  const char* home = std::getenv("HOME");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::string(home ? home : "") + "/.pyenv/versions", ec)) {
    auto name = e.path().filename().string();
    auto exe = e.path() / "bin" / ("python" + minor);
    if (name.starts_with(minor + ".") && std::filesystem::exists(exe)) return exe;
  }
  return "";
}

class DescPyenvIT : public DescAgentIT, public ::testing::WithParamInterface<std::string> {};

TEST_P(DescPyenvIT, PerDescCountsEqualTheWorkloadsOwn) {
  const std::string minor = GetParam();
  const std::string python = pyenv_python(minor);
  if (python.empty()) GTEST_SKIP() << "no pyenv CPython " << minor << " installed (optional interpreter)";
  const std::string deps = dir_ + "/pydeps";
  std::filesystem::create_directories(deps);
  for (const char* m : {"yaml", "prometheus_client", "decorator.py"}) {
    std::filesystem::create_directory_symlink(std::string("/usr/lib/python3/dist-packages/") + m, deps + "/" + m, ec_);
    if (ec_) std::filesystem::create_symlink(std::string("/usr/lib/python3/dist-packages/") + m, deps + "/" + m, ec_);
  }
  std::string path = deps;
  if (minor == "3.11") {
    std::filesystem::create_directory_symlink("/usr/lib/python3/dist-packages/psycopg2", deps + "/psycopg2");
  } else {
    path = std::string(SP_WORKLOAD_DIR) + "/pqshim:" + deps;
  }
  WorkloadSpec spec;
  spec.name = "desc_py" + minor.substr(2);
  spec.duration_s = 3;
  spec.use_db = true;
  spec.python = python;
  spec.env = {{"PYTHONPATH", path}};
  spec.extra_args = {"--gc-schedule", "none", "--io-rate",      "0", "--query-rate", "60", "--bare-queries", "1",
                     "--slow-query",  "0.01", "--start-gate", gate(spec.name)};
  Workload w(spec, dir_);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  auto before = attach_and_go(w, true);
  finish(w);
  Counts got = minus(per_desc(spec.name), before);
  Counts want = truth_per_desc(w.truth_path());
  ASSERT_GT(want["persist_events"], 10) << sp::test::read_text(w.log_path());
  ASSERT_GT(want["unattributed"], 10);
  EXPECT_EQ(got, want);
  auto lookups = per_desc(spec.name, "synapse_profiler_db_desc_lookups_total", "result");
  EXPECT_EQ(lookups["no_thread_state"], 0);
  EXPECT_EQ(lookups["bad_value"], 0);
  std::cout << "  " << python << ": " << lookups["found"] << " found, " << lookups["no_frame"] << " no_frame\n";
}

INSTANTIATE_TEST_SUITE_P(Versions, DescPyenvIT, ::testing::Values("3.10", "3.11", "3.12", "3.13"),
                         [](const auto& info) { return "Py" + info.param.substr(0, 1) + info.param.substr(2); });

}  // namespace
