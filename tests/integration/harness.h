// Shared by the integration tests: starting and stopping real processes (the Synapse-like workload, the agent),
// free ports, HTTP GETs on 127.0.0.1, the test PostgreSQL from scripts/test.sh, and the BPF skip policy.
#pragma once

#include <gtest/gtest.h>

#include "../common/require.h"
#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sp::test {

// Empty when BPF tests can run here (root); otherwise why not.
std::string bpf_unavailable_reason();

// A child process; killed (SIGKILL) and reaped on destruction if still running.
class Process {
 public:
  Process() = default;
  // argv[0] is the program path. stdout and stderr go to `log_path` (appended).
  Process(const std::vector<std::string>& argv, const std::string& log_path, const std::string& cwd = {},
          const std::map<std::string, std::string>& extra_env = {});
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig` and waits up to `timeout` for exit; returns the wait status, or nullopt on timeout.
  std::optional<int> stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::optional<int> wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// How much slower than a native run this one is (SP_TEST_TIME_SCALE, at least 1; e.g. 10 under qemu's TCG in the
// kernel matrix): every wait_for() and Process::wait() timeout, the workload's start-gate wait and scaled() delays are
// multiplied by it, and a workload runs sqrt(time_scale()) times its duration_s (enough rounds of its schedule for
// the tests' "ran too few to compare" floors on an emulated CPU). 1 when unset: native runs are unchanged.
double time_scale();
std::chrono::milliseconds scaled(std::chrono::milliseconds d);

int free_port();
bool port_listening(int port);
// `timeout` is multiplied by time_scale().
bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
              std::chrono::milliseconds step = std::chrono::milliseconds(100));

// GET http://127.0.0.1:PORT/PATH; nullopt when the connection fails or the status is not 200.
std::optional<std::string> http_get(int port, const std::string& path);

// Runs a command, returns its exit status and stdout.
struct CommandResult {
  int status = -1;
  std::string out;
};
CommandResult run_command(const std::vector<std::string>& argv);

std::string read_text(const std::string& path);

// Loaded BPF programs named like ours (gc_*, pq_*, pgs_*, io_start*, rq_*, nvme_*, rt_*) from bpftool's listing; -1 when
// bpftool fails. With `orphaned_only`, only those no process holds open: what an exited agent left in the kernel
// (other agents running meanwhile, e.g. other test runs on the machine, hold theirs).
int our_bpf_programs(bool orphaned_only = false);
// IDs of the loaded programs named like ours that process `pid` holds (its program fds and links, from
// /proc/PID/fdinfo): one agent's programs, whatever other agents run beside it. Empty when bpftool fails.
std::set<std::uint64_t> bpf_programs_held_by(pid_t pid);
// How many of `ids` are still loaded (the kernel never reuses a program ID soon); -1 when bpftool fails.
int bpf_programs_loaded(const std::set<std::uint64_t>& ids);
std::string make_temp_dir(const std::string& prefix);

// What a test compared, as a property of the running test ("KEY" = "AGENT of TRUTH" in --gtest_output's file): the
// kernel matrix (scripts/kernel_matrix.sh) shows these counts per kernel. Records only; the test asserts.
void record_compared(const std::string& key, double agent, double truth);

// The PostgreSQL cluster started by scripts/test.sh, when there is one.
struct PgEnv {
  std::string host, socket_dir, user, db;
  int port = 0;
};
std::optional<PgEnv> test_postgres();

// Another client (not a Synapse worker) takes the test workload's `users` table in ACCESS EXCLUSIVE mode three times,
// 0.3 s apart, for 0.4 s each, so that the backends of workers touching it wait on the lock. Blocks until done;
// returns the seconds it held the table by its own clock, nullopt (with a test failure) when it failed.
std::optional<double> hold_users_table_lock(const PgEnv& pg, const std::string& log_path);

// A Synapse-like workload process (tests/workload) with a generated config.
struct WorkloadSpec {
  std::string name;                      // worker_name; "master" makes a main process without worker_name
  std::string app = "synapse.app.generic_worker";
  int metrics_port = 0;                  // 0: pick a free one
  double duration_s = 60;
  bool use_db = false;                   // needs test_postgres(), or `pg`
  std::optional<PgEnv> pg;               // a cluster of the test's own instead of test_postgres()
  bool unix_socket = false;
  std::vector<std::string> extra_args;   // workload command-line options
  std::string python = "/usr/bin/python3.11";  // the interpreter (or an embedding program taking python's argv)
  std::map<std::string, std::string> env;      // extra environment (e.g. LD_LIBRARY_PATH)
  std::string extra_yaml;                // appended to the config
};

class Workload {
 public:
  Workload(WorkloadSpec spec, const std::string& dir);
  pid_t pid() const { return proc_.pid(); }
  int metrics_port() const { return spec_.metrics_port; }
  const WorkloadSpec& spec() const { return spec_; }
  const std::string& config_path() const { return config_; }
  const std::string& truth_path() const { return truth_; }
  const std::string& log_path() const { return log_; }
  Process& process() { return proc_; }
  // Waits until the metrics port listens (the process is up and has read its config).
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(20));

 private:
  WorkloadSpec spec_;
  std::string config_, truth_, log_;
  Process proc_;
};

}  // namespace sp::test

namespace sp::test {

// The value of the first sample of `name` in Prometheus text whose labels include all of `labels`.
// Sum over the samples of `name` whose labels include every pair of `filter` (0 when none does).
double sum_of(const std::string& metrics, const std::string& name, const std::map<std::string, std::string>& filter);

std::optional<double> metric_value(const std::string& text, const std::string& name,
                                   const std::map<std::string, std::string>& labels);

}  // namespace sp::test

namespace sp::test {

// The agent binary serving /metrics on a free port of 127.0.0.1, logging to DIR/agent.log; stopped with SIGTERM by
// stop() (which checks it exits cleanly) or killed on destruction.
class AgentProcess {
 public:
  AgentProcess() = default;
  // Starts `synapse-profiler run` with a fast rescan and waits until /readyz answers (the first scan has attached);
  // check running() after.
  AgentProcess(const std::string& dir, const std::string& rescan_interval = "500ms",
               const std::vector<std::string>& extra_args = {});
  bool running() { return healthy_ && proc_.running(); }
  int port() const { return port_; }
  pid_t pid() const { return proc_.pid(); }
  std::string metrics() const { return http_get(port_, "/metrics").value_or(""); }
  std::string log() const { return read_text(log_path_); }
  // Waits until the agent has completed `rounds` more rescans and kernel polls than now (what happened before this
  // call has been drained and attributed). On a busy machine one scan can hold the polling loop up for seconds.
  bool wait_rounds(int rounds = 2, std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;
  // SIGTERM, then true when it exited 0.
  bool stop();

 private:
  int port_ = 0;
  bool healthy_ = false;
  std::string log_path_;
  Process proc_;
};

}  // namespace sp::test

namespace sp::test {

// Base of the tests that run the agent binary: a temporary directory and an agent serving /metrics, stopped (and
// checked to exit cleanly) after each test. Skips (or fails under SYNAPSE_PROFILER_REQUIRE_BPF=1) without BPF;
// `needs_postgres` also requires the test PostgreSQL of scripts/test.sh.
class AgentTest : public ::testing::Test {
 protected:
  // `agent_args`: extra options of `synapse-profiler run`.
  AgentTest(std::string dir_prefix, bool needs_postgres = false, std::vector<std::string> agent_args = {})
      : prefix_(std::move(dir_prefix)), needs_postgres_(needs_postgres), agent_args_(std::move(agent_args)) {}
  void SetUp() override;
  void TearDown() override;
  std::string agent_log() const { return agent_.log(); }
  std::string metrics() const { return agent_.metrics(); }

  std::string dir_;
  AgentProcess agent_;

 private:
  std::string prefix_;
  bool needs_postgres_;
  std::vector<std::string> agent_args_;
};

}  // namespace sp::test
