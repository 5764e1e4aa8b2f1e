// The libpq probe loader against a real psycopg2 client and the test PostgreSQL, without the agent: every statement
// the client sends gives exactly one record, timed inside the client's own interval around it (its own
// CLOCK_MONOTONIC), through PQexec (what Synapse uses) and through psycopg2's asynchronous connections (PQsendQuery ...
// PQgetResult() == NULL); the asynchronous probes never double-count the PQsendQuery/PQgetResult calls that PQexec
// makes internally; and records the ring buffer cannot take are counted per process instead.
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "probes/libpq_probe.h"
#include "core/postgres/sql_fingerprint.h"
#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;

namespace {

// The client: connects (synchronously, or with async_=1 and psycopg2's documented poll()/select() loop), creates a
// temp table, says it is ready, waits for the gate, then sends the statements and records around each one its own
// monotonic start and end and the text psycopg2 sent (cursor.query). Results go out as JSON lines at the end, so that
// no file I/O falls inside a timed interval. os._exit(0) skips interpreter teardown: nothing runs after the records.
// Modes: "sync", "async", and "storm" (many tiny synchronous statements, to overflow the ring buffer).
constexpr const char* kClientScript = R"PY(
import json, os, select, sys, time
import psycopg2
import psycopg2.extensions as ext

host, port, user, db, ready, gate, out, mode = sys.argv[1:9]
is_async = mode == "async"


def wait(conn):
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        if state == ext.POLL_READ:
            select.select([conn.fileno()], [], [])
        elif state == ext.POLL_WRITE:
            select.select([], [conn.fileno()], [])
        else:
            raise psycopg2.OperationalError("poll() returned %s" % state)


conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=db, async_=1 if is_async else 0)
if is_async:
    wait(conn)
cur = conn.cursor()


def run(sql, params=None):
    cur.execute(sql, params)
    if is_async:
        wait(conn)


run("CREATE TEMP TABLE sp_it (id int PRIMARY KEY, token text, n int)")
if not is_async:
    conn.commit()
open(ready, "w").close()
while not os.path.exists(gate):
    time.sleep(0.005)
records = [{"type": "gate", "open_ns": time.monotonic_ns()}]

SECRET = "syt_s3cr3t_x"
if mode == "storm":
    count = 25000  # the 2 MiB ring holds about 15 000 records of "SELECT n"
    start = time.monotonic_ns()
    for i in range(count):
        cur.execute("SELECT %s", (i,))
    conn.commit()
    end = time.monotonic_ns()
    records.append({"type": "storm", "count": count, "start_ns": start, "end_ns": end})
else:
    for rnd in range(3):
        base = rnd * 10
        statements = [
            ("INSERT", "INSERT INTO sp_it (id, token, n) VALUES (%s, %s, %s)", (base + 1, SECRET, 10), 0),
            ("INSERT", "INSERT INTO sp_it (id, token, n) VALUES (%s, %s, %s)", (base + 2, "plain", 20), 0),
            ("SELECT", "SELECT token FROM sp_it WHERE id = %s", (base + 1,), 0),
            ("UPDATE", "UPDATE sp_it SET n = n + %s WHERE token = %s", (1, SECRET), 0),
            ("SELECT", "SELECT count(*) FROM sp_it WHERE n > %s", (5,), 0),
            ("SELECT", "SELECT pg_sleep(%s)", (0.005,), 5000000),
            ("DELETE", "DELETE FROM sp_it WHERE id = %s", (base + 2,), 0),
            ("DELETE", "DELETE FROM sp_it WHERE token = %s", (SECRET,), 0),
        ]
        for verb, sql, params, sleep_ns in statements:
            # psycopg2 sends BEGIN inside the first execute() of a transaction (never on async connections).
            begin = not is_async and conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE
            start = time.monotonic_ns()
            run(sql, params)
            end = time.monotonic_ns()
            records.append({"type": "query", "verb": verb, "start_ns": start, "end_ns": end, "sleep_ns": sleep_ns,
                            "begin": begin, "sql": cur.query.decode()})
        if not is_async:
            start = time.monotonic_ns()
            conn.commit()
            end = time.monotonic_ns()
            records.append({"type": "commit", "start_ns": start, "end_ns": end})
with open(out, "w") as f:
    for r in records:
        f.write(json.dumps(r, separators=(",", ":")) + "\n")
os._exit(0)
)PY";

struct Event {
  std::uint32_t tgid = 0;
  std::uint32_t tid = 0;
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint32_t kind = 0;
  std::string text;
};

// One interval the client timed, and the statements libpq must have seen inside it.
struct Expected {
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;
  std::string verb;  // of the statement itself; BEGIN and COMMIT are in `texts` too
  std::int64_t sleep_ns = 0;
  std::multiset<std::string> texts;
  std::vector<const Event*> got;
};

// The libpq a process has mapped (first mapping whose basename starts with libpq.so.5), as the probe must open it:
// through the process's own root.
std::string libpq_of(int pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (std::filesystem::path(path).filename().string().starts_with("libpq.so.5")) {
      return "/proc/" + std::to_string(pid) + "/root" + path;
    }
  }
  return {};
}

class LibpqProbeIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
    auto pg = sp::test::test_postgres();
    if (!pg) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
    pg_ = *pg;
    std::string error;
    probe_ = sp::bpf::LibpqProbe::create(error);
    ASSERT_TRUE(probe_) << error;  // a verifier rejection of our own program is a failure, never a skip
    dir_ = sp::test::make_temp_dir("sp-libpq-probe-it");
  }

  // Starts the client in `mode`, attaches once it is connected and idle, opens the gate, waits for it to finish, and
  // keeps what the probe delivered (events_) and the client's records (truth_).
  void run_client(const std::string& mode, bool async_probes) {
    std::string ready = dir_ + "/" + mode + ".ready";
    std::string gate = dir_ + "/" + mode + ".gate";
    truth_path_ = dir_ + "/" + mode + ".jsonl";
    log_path_ = dir_ + "/" + mode + ".log";
    sp::test::Process client({"/usr/bin/python3.11", "-c", kClientScript, pg_.host, std::to_string(pg_.port), pg_.user,
                              pg_.db, ready, gate, truth_path_, mode},
                             log_path_);
    ASSERT_TRUE(sp::test::wait_for([&] { return std::filesystem::exists(ready) || !client.running(); }, 20s));
    ASSERT_TRUE(client.running()) << "client exited before the gate: " << sp::test::read_text(log_path_);
    pid_ = client.pid();

    sp::bpf::LibpqAttachSpec spec;
    spec.host_pid = pid_;
    spec.libpq_path = libpq_of(pid_);
    spec.async = async_probes;
    spec.description = "psycopg2 " + mode + " client (pid " + std::to_string(pid_) + ")";
    ASSERT_FALSE(spec.libpq_path.empty()) << "no libpq.so.5 in /proc/" << pid_ << "/maps";
    std::string error;
    ASSERT_TRUE(probe_->attach(spec, error)) << error;

    std::ofstream(gate).put('\n');
    auto st = client.wait(60s);
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(log_path_);

    probe_->drain([&](const pq_event& e) {
      Event ev;
      ev.tgid = e.tgid;
      ev.tid = e.tid;
      ev.start_ns = e.start_ns;
      ev.end_ns = e.end_ns;
      ev.kind = e.kind;
      ev.text.assign(e.text, std::min<std::size_t>(e.text_len, sizeof e.text - 1));
      events_.push_back(std::move(ev));
    });
    truth_ = sp::test::read_truth(truth_path_);
  }

  // The client's timed intervals with what libpq must have seen in each.
  std::vector<Expected> expected() const {
    std::vector<Expected> out;
    for (const auto& r : truth_) {
      Expected x;
      if (r.type == "query") {
        x.verb = *r.text("verb");
        x.sleep_ns = *r.integer("sleep_ns");
        std::string sql = *r.text("sql");
        EXPECT_EQ(sql.find('\\'), std::string::npos) << "JSON escapes in the client's SQL: " << sql;
        x.texts.insert(sql);
        if (r.line.find("\"begin\":true") != std::string::npos) x.texts.insert("BEGIN");
      } else if (r.type == "commit") {
        x.verb = "COMMIT";
        x.texts.insert("COMMIT");
      } else {
        continue;
      }
      x.start_ns = *r.integer("start_ns");
      x.end_ns = *r.integer("end_ns");
      out.push_back(std::move(x));
    }
    return out;
  }

  // Every event falls inside exactly one interval the client timed, and each interval holds exactly its statements,
  // each once, of `kind`, with the right verb, never longer than the client's own timing.
  void expect_every_statement_once(std::uint32_t kind, bool expect_transactions) {
    auto want = expected();
    ASSERT_EQ(want.size(), expect_transactions ? 27u : 24u) << sp::test::read_text(truth_path_);
    std::size_t want_events = 0;
    int begins = 0;
    int commits = 0;
    for (const auto& x : want) {
      want_events += x.texts.size();
      begins += static_cast<int>(x.texts.count("BEGIN"));
      commits += static_cast<int>(x.texts.count("COMMIT"));
    }
    EXPECT_EQ(begins, expect_transactions ? 3 : 0);
    EXPECT_EQ(commits, expect_transactions ? 3 : 0);
    EXPECT_EQ(events_.size(), want_events);

    for (const auto& e : events_) {
      EXPECT_EQ(e.tgid, static_cast<std::uint32_t>(pid_));
      EXPECT_EQ(e.tid, static_cast<std::uint32_t>(pid_)) << "the client runs its queries on its main thread";
      EXPECT_EQ(e.kind, kind) << e.text;
      Expected* home = nullptr;
      for (auto& x : want) {
        if (static_cast<std::int64_t>(e.start_ns) >= x.start_ns && static_cast<std::int64_t>(e.end_ns) <= x.end_ns) {
          home = &x;
          break;
        }
      }
      if (!home) {
        ADD_FAILURE() << "event outside every interval the client timed: [" << e.start_ns << ", " << e.end_ns << "] "
                      << e.text;
        continue;
      }
      home->got.push_back(&e);
    }

    for (const auto& x : want) {
      std::multiset<std::string> got;
      for (const Event* e : x.got) {
        got.insert(e->text);
        auto fp = sp::fingerprint_sql(e->text, false);
        EXPECT_FALSE(fp.truncated) << e->text;
        EXPECT_EQ(fp.text.find("s3cr3t"), std::string::npos) << fp.text;
        std::string verb = e->text == "BEGIN" || e->text == "COMMIT" ? e->text : x.verb;
        EXPECT_EQ(fp.verb, verb) << e->text;
        EXPECT_GE(e->end_ns, e->start_ns);
        EXPECT_LE(static_cast<std::int64_t>(e->end_ns - e->start_ns), x.end_ns - x.start_ns) << e->text;
        // pg_sleep's server time lies between PQexec's entry and return (or the send and the last PQgetResult).
        if (x.sleep_ns > 0 && e->text != "BEGIN") {
          EXPECT_GE(static_cast<std::int64_t>(e->end_ns - e->start_ns), x.sleep_ns) << e->text;
        }
      }
      EXPECT_EQ(got, x.texts) << "in the client's interval [" << x.start_ns << ", " << x.end_ns << "]";
    }
  }

  void expect_nothing_lost() {
    EXPECT_EQ(probe_->events_lost(), 0u);
    EXPECT_EQ(probe_->unmatched_returns(), 0u);
    EXPECT_TRUE(probe_->read_lost().empty());
  }

  sp::test::PgEnv pg_;
  std::unique_ptr<sp::bpf::LibpqProbe> probe_;
  std::string dir_;
  std::string truth_path_;
  std::string log_path_;
  int pid_ = 0;
  std::vector<Event> events_;
  std::vector<sp::test::TruthRecord> truth_;
};

}  // namespace

TEST_F(LibpqProbeIT, SyncPsycopg2EveryStatementOnceInsideClientTiming) {
  ASSERT_NO_FATAL_FAILURE(run_client("sync", false));
  expect_every_statement_once(SP_PQ_EXEC, true);
  expect_nothing_lost();
}

TEST_F(LibpqProbeIT, AsyncPsycopg2EveryStatementOnceFromSendToLastResult) {
  ASSERT_NO_FATAL_FAILURE(run_client("async", true));
  expect_every_statement_once(SP_PQ_ASYNC, false);
  expect_nothing_lost();
}

// PQexec calls PQsendQuery and PQgetResult itself: with the asynchronous probes attached too, a synchronous client
// must still give one PQexec record per statement and nothing else.
TEST_F(LibpqProbeIT, AsyncProbesIgnoreCallsNestedInsidePQexec) {
  ASSERT_NO_FATAL_FAILURE(run_client("sync", true));
  expect_every_statement_once(SP_PQ_EXEC, true);
  expect_nothing_lost();
}

// Far more records than the 2 MiB ring buffer holds, with nobody draining: what is not delivered is counted for the
// client's process, so delivered + lost is still every statement.
TEST_F(LibpqProbeIT, RingBufferOverflowIsCountedPerProcess) {
  ASSERT_NO_FATAL_FAILURE(run_client("storm", false));
  auto storm = sp::test::truth_of_type(truth_, "storm");
  ASSERT_EQ(storm.size(), 1u) << sp::test::read_text(truth_path_);
  auto count = static_cast<std::uint64_t>(*storm[0].integer("count"));
  std::int64_t start = *storm[0].integer("start_ns");
  std::int64_t end = *storm[0].integer("end_ns");
  std::uint64_t want = count + 2;  // one BEGIN, one COMMIT

  for (const auto& e : events_) {
    EXPECT_EQ(e.tgid, static_cast<std::uint32_t>(pid_));
    EXPECT_GE(static_cast<std::int64_t>(e.start_ns), start);
    EXPECT_LE(static_cast<std::int64_t>(e.end_ns), end);
  }
  std::uint64_t lost = probe_->events_lost();
  EXPECT_GT(lost, 0u) << "the ring buffer did not overflow: " << events_.size() << " records delivered";
  EXPECT_EQ(events_.size() + lost, want);
  EXPECT_EQ(probe_->unmatched_returns(), 0u);

  auto per_process = probe_->read_lost();
  ASSERT_EQ(per_process.size(), 1u);
  EXPECT_EQ(per_process[0].first, static_cast<std::uint32_t>(pid_));
  const pq_lost& l = per_process[0].second;
  EXPECT_EQ(l.count, lost);
  std::uint64_t in_buckets = 0;
  for (auto b : l.buckets) in_buckets += b;
  EXPECT_EQ(in_buckets, l.count);
  EXPECT_GT(l.sum_ns, 0u);
  EXPECT_LE(static_cast<std::int64_t>(l.sum_ns), end - start);
}
