#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>
#include <regex>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace sp::test {

std::string bpf_unavailable_reason() {
  if (geteuid() != 0) return "BPF integration tests need root (run scripts/test.sh as root)";
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) return "no kernel BTF at /sys/kernel/btf/vmlinux";
  return {};
}

Process::Process(const std::vector<std::string>& argv, const std::string& log_path, const std::string& cwd,
                 const std::map<std::string, std::string>& extra_env) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    if (!extra_env.count(kv.substr(0, kv.find('=')))) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : extra_env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  int rc = posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ADD_FAILURE() << "spawn " << argv[0] << ": " << std::strerror(rc);
    pid_ = -1;
  }
}

Process::Process(Process&& o) noexcept : pid_(std::exchange(o.pid_, -1)), status_(o.status_) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0 && !status_) stop(SIGKILL);
    pid_ = std::exchange(o.pid_, -1);
    status_ = o.status_;
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0 && !status_) stop(SIGKILL);
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  wait_for([this] { return !running(); }, timeout, std::chrono::milliseconds(20));
  return status_;
}

std::optional<int> Process::stop(int sig, std::chrono::milliseconds timeout) {
  if (!running()) return status_;
  kill(pid_, sig);
  return wait(timeout);
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool port_listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

double time_scale() {
  static const double scale = [] {
    const char* v = std::getenv("SP_TEST_TIME_SCALE");
    if (v == nullptr || *v == '\0') return 1.0;
    char* end = nullptr;
    double s = std::strtod(v, &end);
    if (end == v || *end != '\0' || !(s >= 1.0 && s <= 1000.0)) {
      ADD_FAILURE() << "SP_TEST_TIME_SCALE=" << v << ": expected a number from 1 to 1000";
      return 1.0;
    }
    return s;
  }();
  return scale;
}

namespace {
// A workload runs sqrt(time_scale()) times its WorkloadSpec::duration_s, so that on an emulated CPU it still gets
// through enough rounds of its schedule for the tests' "ran too few to compare" floors. 1 natively.
double workload_scale() { return std::sqrt(time_scale()); }
}  // namespace

std::chrono::milliseconds scaled(std::chrono::milliseconds d) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(d.count()) * time_scale()));
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout, std::chrono::milliseconds step) {
  auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

std::optional<std::string> http_get(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return std::nullopt;
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return std::nullopt;
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<std::size_t>(n));
  close(fd);
  auto header_end = resp.find("\r\n\r\n");
  if (header_end == std::string::npos) return std::nullopt;
  std::string status_line = resp.substr(0, resp.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) return std::nullopt;
  return resp.substr(header_end + 4);
}

CommandResult run_command(const std::vector<std::string>& argv) {
  std::string out_path = make_temp_dir("sp-cmd") + "/out";
  CommandResult r;
  {
    Process p(argv, out_path);
    auto st = p.wait(std::chrono::seconds(120));
    r.status = st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1;
  }
  r.out = read_text(out_path);
  return r;
}

std::optional<double> hold_users_table_lock(const PgEnv& pg, const std::string& log_path) {
  const char* holder = R"py(
import psycopg2, sys, time
conn = psycopg2.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3], dbname=sys.argv[4])
cur = conn.cursor()
held = 0
for _ in range(3):
    time.sleep(0.3)
    cur.execute("LOCK TABLE synapse_workload.users IN ACCESS EXCLUSIVE MODE")
    t0 = time.monotonic_ns()
    time.sleep(0.4)
    conn.commit()
    held += time.monotonic_ns() - t0
print(held)
)py";
  Process h({"/usr/bin/python3.11", "-c", holder, pg.host, std::to_string(pg.port), pg.user, pg.db}, log_path);
  auto st = h.wait(std::chrono::seconds(30));
  if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
    ADD_FAILURE() << "the lock holder failed: " << read_text(log_path);
    return std::nullopt;
  }
  return std::stod(read_text(log_path)) / 1e9;
}

namespace {

// IDs of the BPF programs some process holds open (a program fd, or a link fd, whose fdinfo names the program).
// The program IDs in /proc/PID/fdinfo/* (program fds and links name the program they hold).
void add_held_program_ids(const std::filesystem::path& proc_dir, std::set<std::uint64_t>& ids) {
  std::error_code ec;
  for (const auto& fd : std::filesystem::directory_iterator(proc_dir / "fdinfo", ec)) {
    std::ifstream in(fd.path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("prog_id:")) ids.insert(std::stoull(line.substr(8)));
    }
  }
}

std::set<std::uint64_t> held_program_ids() {
  namespace fs = std::filesystem;
  std::set<std::uint64_t> ids;
  std::error_code ec;
  for (const auto& proc : fs::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    add_held_program_ids(proc.path(), ids);
  }
  return ids;
}

const std::regex& our_program_names() {
  static const std::regex ours("^(gc_|pq_|pgs_|io_start|rq_|nvme_|rt_).*");
  return ours;
}

// id -> name of every loaded program; nullopt when bpftool fails.
std::optional<std::map<std::uint64_t, std::string>> loaded_programs() {
  auto r = run_command({"/usr/sbin/bpftool", "-j", "prog", "show"});
  if (r.status != 0) return std::nullopt;
  std::map<std::uint64_t, std::string> out;
  for (const auto& p : nlohmann::json::parse(r.out)) {
    out[p["id"].get<std::uint64_t>()] = p.contains("name") ? p["name"].get<std::string>() : "";
  }
  return out;
}

}  // namespace

int our_bpf_programs(bool orphaned_only) {
  const auto loaded = loaded_programs();
  if (!loaded) return -1;
  const std::set<std::uint64_t> held = orphaned_only ? held_program_ids() : std::set<std::uint64_t>{};
  int n = 0;
  for (const auto& [id, name] : *loaded) {
    if (!std::regex_match(name, our_program_names())) continue;
    if (orphaned_only && held.count(id)) continue;
    ++n;
  }
  return n;
}

std::set<std::uint64_t> bpf_programs_held_by(pid_t pid) {
  std::set<std::uint64_t> held;
  add_held_program_ids("/proc/" + std::to_string(pid), held);
  const auto loaded = loaded_programs();
  if (!loaded) return {};
  std::set<std::uint64_t> ours;
  for (std::uint64_t id : held) {
    if (auto it = loaded->find(id); it != loaded->end() && std::regex_match(it->second, our_program_names())) {
      ours.insert(id);
    }
  }
  return ours;
}

int bpf_programs_loaded(const std::set<std::uint64_t>& ids) {
  const auto loaded = loaded_programs();
  if (!loaded) return -1;
  int n = 0;
  for (std::uint64_t id : ids) n += loaded->count(id) ? 1 : 0;
  return n;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string make_temp_dir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + ".XXXXXX";
  if (!mkdtemp(tmpl.data())) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  return tmpl;
}

void record_compared(const std::string& key, double agent, double truth) {
  std::ostringstream s;
  s.precision(12);
  s << agent << " of " << truth;
  ::testing::Test::RecordProperty(key, s.str());
}

std::optional<PgEnv> test_postgres() {
  const char* port = std::getenv("SP_PG_PORT");
  if (!port) return std::nullopt;
  PgEnv pg;
  pg.port = std::atoi(port);
  pg.host = std::getenv("SP_PG_HOST") ? std::getenv("SP_PG_HOST") : "127.0.0.1";
  pg.socket_dir = std::getenv("SP_PG_SOCKET_DIR") ? std::getenv("SP_PG_SOCKET_DIR") : "";
  pg.user = std::getenv("SP_PG_USER") ? std::getenv("SP_PG_USER") : "synapse";
  pg.db = std::getenv("SP_PG_DB") ? std::getenv("SP_PG_DB") : "synapse";
  return pg;
}

Workload::Workload(WorkloadSpec spec, const std::string& dir) : spec_(std::move(spec)) {
  if (spec_.metrics_port == 0) spec_.metrics_port = free_port();
  config_ = dir + "/" + spec_.name + ".yaml";
  truth_ = dir + "/" + spec_.name + ".truth.jsonl";
  log_ = dir + "/" + spec_.name + ".log";
  std::ofstream cfg(config_);
  // Like real configs: the main process's homeserver.yaml names no worker (its name is then "master").
  if (spec_.name != "master") cfg << "worker_name: " << spec_.name << "\nworker_app: " << spec_.app << "\n";
  cfg << "enable_metrics: true\n"
      // Like Synapse: the main process reads `listeners`, workers `worker_listeners`.
      << (spec_.name == "master" ? "listeners" : "worker_listeners") << ":\n  - type: metrics\n    port: " << spec_.metrics_port << "\n    bind_addresses: ['127.0.0.1']\n";
  std::vector<std::string> argv = {spec_.python, "-m", spec_.app, "-c", config_, "--duration",
                                   std::to_string(spec_.duration_s * workload_scale()), "--truth", truth_};
  // A test opens the gate once the agent has attached and its baseline is read, which on a loaded machine can take
  // longer than the run itself (several kernel map reads, once a second): the workload waits for it up to a minute
  // (more under the kernel matrix's time scale) instead of its duration, the workload's own default.
  argv.push_back("--start-gate-timeout");
  argv.push_back(std::to_string(std::max(60 * time_scale(), spec_.duration_s * time_scale())));
  if (spec_.use_db) {
    auto pg = spec_.pg ? spec_.pg : test_postgres();
    if (!pg) {
      ADD_FAILURE() << "workload " << spec_.name << " needs the test PostgreSQL (run through scripts/test.sh)";
    } else {
      cfg << "database:\n  name: psycopg2\n  args:\n    host: '" << (spec_.unix_socket ? pg->socket_dir : pg->host)
          << "'\n    port: " << pg->port << "\n    user: " << pg->user << "\n    dbname: " << pg->db << "\n";
    }
  } else {
    argv.push_back("--no-db");
  }
  // Media files in the test's own directory, never in the source tree (a killed workload leaves its files behind).
  if (spec_.extra_yaml.find("media_store_path:") == std::string::npos) {
    cfg << "media_store_path: '" << dir << "/" << spec_.name << ".media'\n";
  }
  cfg << spec_.extra_yaml;
  cfg.close();
  argv.insert(argv.end(), spec_.extra_args.begin(), spec_.extra_args.end());
  proc_ = Process(argv, log_, SP_WORKLOAD_DIR, spec_.env);
}

bool Workload::wait_ready(std::chrono::milliseconds timeout) {
  return wait_for([this] { return port_listening(spec_.metrics_port) || !proc_.running(); }, timeout) &&
         proc_.running();
}

}  // namespace sp::test

namespace sp::test {

double sum_of(const std::string& metrics, const std::string& name,
              const std::map<std::string, std::string>& filter) {
  double total = 0;
  std::istringstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(name + "{")) continue;
    bool ok = true;
    for (const auto& [k, v] : filter) {
      if (line.find(k + "=\"" + v + "\"") == std::string::npos) ok = false;
    }
    if (ok) total += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

std::optional<double> metric_value(const std::string& text, const std::string& name,
                                   const std::map<std::string, std::string>& labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(name)) continue;
    std::size_t pos = name.size();
    if (pos < line.size() && line[pos] != '{' && line[pos] != ' ') continue;  // a longer name
    bool all = true;
    for (const auto& [k, v] : labels) {
      if (line.find(k + "=\"" + v + "\"") == std::string::npos) {
        all = false;
        break;
      }
    }
    if (!all) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nullopt;
}

}  // namespace sp::test

namespace sp::test {

AgentProcess::AgentProcess(const std::string& dir, const std::string& rescan_interval,
                           const std::vector<std::string>& extra_args)
    : port_(free_port()), log_path_(dir + "/agent.log") {
  std::vector<std::string> argv = {SP_BINARY, "run", "--listen", "127.0.0.1:" + std::to_string(port_),
                                   "--rescan-interval", rescan_interval, "--verbose"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  proc_ = Process(argv, log_path_);
  // The first scan attaches to every Synapse process on the machine before /readyz answers: with dozens (other
  // test runs) on a loaded machine that takes seconds. /healthz (liveness) answers long before.
  healthy_ = wait_for([&] { return http_get(port_, "/readyz").has_value(); }, std::chrono::seconds(120));
}

bool AgentProcess::wait_rounds(int rounds, std::chrono::milliseconds timeout) const {
  auto counts = [&] {
    const std::string m = metrics();
    return std::pair{metric_value(m, "synapse_profiler_probe_polls_total", {}).value_or(-1),
                     metric_value(m, "synapse_profiler_discovery_scans_total", {}).value_or(-1)};
  };
  const auto [polls, scans] = counts();
  if (polls < 0 || scans < 0) return false;
  return wait_for(
      [&] {
        const auto [p, s] = counts();
        return p >= polls + rounds && s >= scans + rounds;
      },
      timeout);
}

bool AgentProcess::stop() {
  if (proc_.pid() <= 0) return false;
  // Detaching from dozens of processes on a loaded machine takes a while; a hang still fails.
  auto st = proc_.stop(SIGTERM, std::chrono::seconds(60));
  return st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
}

}  // namespace sp::test

namespace sp::test {

void AgentTest::SetUp() {
  if (auto why = bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  if (needs_postgres_ && !test_postgres()) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
  dir_ = make_temp_dir(prefix_);
  agent_ = AgentProcess(dir_, "500ms", agent_args_);
  ASSERT_TRUE(agent_.running()) << agent_.log();
}

void AgentTest::TearDown() {
  if (agent_.port() > 0) {
    EXPECT_TRUE(agent_.stop()) << "agent did not exit cleanly\n" << agent_.log();
  }
}

}  // namespace sp::test
