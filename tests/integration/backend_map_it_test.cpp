// Backend -> worker mapping on the live system against the test PostgreSQL. Client processes (psycopg2, like
// Synapse) connect over TCP 127.0.0.1, over the Unix socket, and over the Unix socket from their own network
// namespace; each prints pg_backend_pid(), PostgreSQL's own word for which backend serves it. BackendMapper, fed the
// backends that discovery finds, must map exactly those backends to those clients with the right transport, leave a
// client that is not a worker unmapped, and drop a client that exited.
#include "core/proc/discovery.h"
#include "core/proc/socket_inventory.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "harness.h"

using namespace std::chrono_literals;

namespace {

// Connects with psycopg2 as Synapse does, prints its backend's PID, then holds the connection open.
constexpr const char* kClient = R"PY(
import sys, time, psycopg2
host, port, user, db = sys.argv[1:5]
conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=db)
cur = conn.cursor()
cur.execute("SELECT pg_backend_pid()")
print("backend", cur.fetchone()[0], flush=True)
time.sleep(300)
)PY";

class Client {
 public:
  Client(const sp::test::PgEnv& pg, const std::string& host, const std::string& log, bool own_netns = false)
      : log_(log) {
    std::vector<std::string> argv;
    if (own_netns) argv = {"/usr/bin/unshare", "--net", "--"};  // execs python: the PID stays the client's
    for (const std::string arg : {"/usr/bin/python3.11", "-c"}) argv.push_back(arg);
    argv.insert(argv.end(), {kClient, host, std::to_string(pg.port), pg.user, pg.db});
    proc_ = sp::test::Process(argv, log);
  }
  int pid() const { return proc_.pid(); }
  sp::test::Process& process() { return proc_; }
  // The backend PID the client printed, once it has connected.
  int backend_pid() {
    int backend = 0;
    sp::test::wait_for(
        [&] {
          std::istringstream in(sp::test::read_text(log_));
          std::string word;
          while (in >> word) {
            if (word == "backend" && in >> backend) return true;
          }
          return false;
        },
        20s);
    return backend;
  }
  std::string log() const { return sp::test::read_text(log_); }

 private:
  std::string log_;
  sp::test::Process proc_;
};

// Backends as the agent finds them: PostgreSQL processes from discovery, without the postmaster.
std::vector<int> discovered_backends(const std::vector<int>& clients) {
  sp::DiscoveryOptions options;
  options.pids = clients;  // no Synapse cmdline: pin them (backends are searched in all of /proc anyway)
  std::vector<int> backends;
  for (const auto& pg : sp::scan(options).postgres) {
    if (!pg.postmaster) backends.push_back(pg.key.pid);
  }
  return backends;
}

const sp::BackendLink* link_of(const std::vector<sp::BackendLink>& links, int backend) {
  const auto it = std::find_if(links.begin(), links.end(), [&](const auto& l) { return l.backend_pid == backend; });
  return it == links.end() ? nullptr : &*it;
}

class BackendMapIT : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = sp::test::test_postgres();
    if (!pg) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
    // The backends' /proc/PID/fd belong to the postgres user and entering a namespace needs CAP_SYS_ADMIN.
    if (::geteuid() != 0) SP_SKIP_UNLESS_BPF_REQUIRED("mapping other users' backends needs root");
    if (pg->socket_dir.empty()) SP_SKIP_UNLESS_BPF_REQUIRED("SP_PG_SOCKET_DIR is not set");
    pg_ = *pg;
    dir_ = sp::test::make_temp_dir("sp-backend-map-it");
  }
  sp::test::PgEnv pg_;
  std::string dir_;
};

TEST_F(BackendMapIT, MapsEachBackendToItsClient) {
  Client tcp(pg_, "127.0.0.1", dir_ + "/tcp.log");
  Client unix_socket(pg_, pg_.socket_dir, dir_ + "/unix.log");
  Client other_netns(pg_, pg_.socket_dir, dir_ + "/netns.log", /*own_netns=*/true);
  Client psql(pg_, "127.0.0.1", dir_ + "/psql.log");  // a client that is not a worker
  const int tcp_backend = tcp.backend_pid();
  const int unix_backend = unix_socket.backend_pid();
  const int netns_backend = other_netns.backend_pid();
  const int psql_backend = psql.backend_pid();
  ASSERT_GT(tcp_backend, 0) << tcp.log();
  ASSERT_GT(unix_backend, 0) << unix_socket.log();
  ASSERT_GT(netns_backend, 0) << other_netns.log();
  ASSERT_GT(psql_backend, 0) << psql.log();

  const std::vector<int> workers = {tcp.pid(), unix_socket.pid(), other_netns.pid()};
  const auto backends = discovered_backends(workers);
  for (const int backend : {tcp_backend, unix_backend, netns_backend, psql_backend}) {
    ASSERT_NE(std::find(backends.begin(), backends.end(), backend), backends.end())
        << "discovery did not find backend " << backend;
  }

  sp::BackendMapper mapper("/proc");
  std::string error;
  const auto links = mapper.map(workers, backends, error);
  EXPECT_EQ(error, "");
  const auto* l = link_of(links, tcp_backend);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->worker_pid, tcp.pid());
  EXPECT_EQ(l->transport, "tcp");
  l = link_of(links, unix_backend);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->worker_pid, unix_socket.pid());
  EXPECT_EQ(l->transport, "unix");
  // Both ends of that Unix connection live in the client's namespace: found only by entering it.
  l = link_of(links, netns_backend);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->worker_pid, other_netns.pid());
  EXPECT_EQ(l->transport, "unix");
  EXPECT_EQ(link_of(links, psql_backend), nullptr);
  // Nothing else maps to our clients (other clusters' backends on this machine included).
  EXPECT_EQ(links.size(), 3u);

  // A worker that exits: its backend is unmapped whether it has already gone or not yet noticed.
  tcp.process().stop(SIGKILL);
  const auto after = mapper.map(workers, discovered_backends(workers), error);
  EXPECT_EQ(link_of(after, tcp_backend), nullptr);
  EXPECT_NE(link_of(after, unix_backend), nullptr);
  EXPECT_EQ(after.size(), 2u);
}

}  // namespace
