// Replay benchmark (issue 20): the agent's own CPU per libpq call at Synapse-like rates, without BPF. A generated
// stream of real-sized records goes through the agent's userspace pipeline as the profiling loop drives it every
// 250 ms: the real GcFamily, LibpqFamily and PgServerFamily drain fake kernels (replay_fakes.h) that hand out
// pre-built gc_event / pq_event / pgs_query_event records, and the real CorrelationHub is their sink and is flushed
// after each poll, with each worker's scrape every 15 s.
//
// The stream: four workers, 2 000 libpq calls/s in all (four pool threads per worker, one connection and backend
// each), every call with its server-side statement; transactions (BEGIN ... COMMIT) under Synapse's descs, with the
// SQL of tests/data/sql whose literals vary from record to record (psycopg2 interpolates them), cut where the BPF
// side cuts them; a few statements outside any transaction; about one GC pause per second per worker.
//
// Measured: the scanning thread's CPU time (CLOCK_THREAD_CPUTIME_ID) in the families' poll() and the hub's flush(),
// divided by the libpq calls replayed: counter `ns_per_call` (a call, its server statement, its share of GC pauses
// and scrapes, and the hub's work on all of them). Making the records is not timed. The first --replay-warmup
// seconds of event time (default 65) fill the hub's windows (the overlap tracker keeps 60 s, the desc matcher 30 s)
// and are not measured; then --replay-seconds (default 10) are.
//
// The run also checks that the pipeline counted what it was given (every call and statement in the families'
// series, statements matched to descs, overlap found): a fake that fed nothing would otherwise look fast.
// --replay-trim-every=SECONDS adds a malloc_trim(0) that often (event time) to the timed part: what the profiling
// loop did after every rescan (5 s by default) before issue 20.
// --replay-dump=FILE writes what the families and the hub computed, to check that a change left the results alone.
// Never a timed test: ctest runs it tiny (BenchSmoke.Replay).
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/families/gc_family.h"
#include "agent/families/libpq_family.h"
#include "agent/families/pgserver_family.h"
#include "core/correlate/hub.h"
#include "core/util/log.h"
#include "replay_fakes.h"

namespace {

using sp::bench::FakeGcKernel;
using sp::bench::FakeLibpqKernel;
using sp::bench::FakePgServerKernel;

std::string g_data_dir = SP_BENCH_DATA_DIR;
double g_warmup_s = 65;
double g_measure_s = 10;
bool g_failed = false;
double g_trim_every_s = 0;  // --replay-trim-every=SECONDS: malloc_trim(0) that often, as the loop did per rescan
std::string g_dump;  // --replay-dump=FILE: what the pipeline computed, to compare two builds' results

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kUs = 1'000;
constexpr std::uint64_t kSec = 1'000'000'000;
constexpr std::uint64_t kTickNs = 250 * kMs;
constexpr int kWorkers = 4;
constexpr int kThreadsPerWorker = 4;
constexpr double kCallsPerSecond = 2000;
constexpr std::uint64_t kScrapeEveryNs = 15 * kSec;
constexpr int kVariants = 16;  // literal variants per statement

std::uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * kSec + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string read_sql(const std::string& name) {
  const auto path = std::filesystem::path(g_data_dir) / "sql" / (name + ".sql");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(2);
  }
  std::ostringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == ';')) text.pop_back();
  return text;
}

// Another value for every literal, same length: letters and digits inside '...' and numbers outside are replaced at
// random, as different user ids, room ids, tokens and timestamps would be.
std::string vary_literals(const std::string& sql, std::mt19937_64& rng) {
  std::string out = sql;
  bool quoted = false, number = false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    const bool digit = c >= '0' && c <= '9';
    if (c == '\'') {
      quoted = !quoted;
      continue;
    }
    if (quoted) {
      if (c >= 'a' && c <= 'z') out[i] = static_cast<char>('a' + rng() % 26);
      if (digit) out[i] = static_cast<char>('0' + rng() % 10);
      continue;
    }
    const char prev = i ? sql[i - 1] : ' ';
    const bool word = std::isalnum(static_cast<unsigned char>(prev)) || prev == '_' || prev == '$';
    if (digit && (number || !word)) {
      number = true;
      out[i] = static_cast<char>('0' + rng() % 10);
    } else {
      number = false;
    }
  }
  return out;
}

// One kind of statement, with its literal variants as the BPF side would hand them over.
struct Statement {
  std::vector<std::string> variants;
};

struct Desc {
  const char* name;
  int weight;                     // relative frequency of its transactions
  std::vector<std::size_t> statements;  // indices into Workload::statements_
};

struct Call {
  std::uint64_t start_ns, end_ns;
  std::size_t statement;  // index into statements_, or kBegin / kCommit
  int desc;               // index into descs_, -1: outside any transaction
  int variant;
};

struct PoolThread {
  int worker;
  std::uint32_t tid;
  std::uint32_t backend;
  std::uint64_t conn;
  std::uint64_t scheduled_ns;  // when its next transaction is due
  std::uint64_t free_ns;       // when its last call ended
  std::deque<Call> upcoming;
};

struct WorkerState {
  std::uint32_t pid;
  std::string name;
  std::uint64_t next_gc_ns;
  int gcs = 0;
  std::uint64_t next_scrape_ns;
  // What the worker would say about itself (seconds): Synapse times a little more than libpq does.
  double query_time_s = 0, gc_time_s = 0;
  std::map<std::string, double> txn_time_s;
};

class Workload {
 public:
  static constexpr std::size_t kBegin = 1'000'000, kCommit = 1'000'001;

  explicit Workload(std::uint64_t start_ns) : rng_(20) {
    // Synapse's statements (tests/data/sql holds real ones), by the transaction that sends them.
    const std::vector<std::string> files = {
        "values_120_rows", "select_events_by_room", "upsert_device_inbox", "tuple_in_list", "union_select",
        "subselect_in_from", "join_using", "in_list_300", "with_insert", "any_array", "delete_pusher",
        "update_password_hash", "insert_access_token", "unnest_then_join", "distinct_from", "select_constant"};
    for (const auto& f : files) {
      const std::string sql = read_sql(f);
      Statement s;
      for (int v = 0; v < kVariants; ++v) s.variants.push_back(vary_literals(sql, rng_));
      statements_.push_back(std::move(s));
    }
    descs_ = {
        {"persist_events", 6, {0, 1, 2, 3}},
        {"get_users_in_room", 5, {4, 5}},
        {"get_user_by_access_token", 8, {6}},
        {"get_events", 4, {7, 6}},
        {"get_recent_event_ids_for_room", 4, {1}},
        {"update_device_list_outbound_pokes", 1, {8, 9}},
        {"get_forward_extremities_for_room", 3, {9}},
        {"delete_pusher", 1, {10}},
        {"user_set_password_hash", 1, {11}},
        {"add_access_token_to_user", 1, {12}},
        {"get_users_who_share_room_with_user", 3, {13, 14}},
    };
    for (const auto& d : descs_) total_weight_ += d.weight;
    for (int w = 0; w < kWorkers; ++w) {
      WorkerState ws;
      ws.pid = static_cast<std::uint32_t>(1001 + w);
      ws.name = w == 0 ? "master" : "worker" + std::to_string(w);
      ws.next_gc_ns = start_ns + static_cast<std::uint64_t>(w) * 230 * kMs + 500 * kMs;
      ws.next_scrape_ns = start_ns + static_cast<std::uint64_t>(w + 1) * 3 * kSec;
      workers_.push_back(ws);
      for (int t = 0; t < kThreadsPerWorker; ++t) {
        PoolThread p;
        p.worker = w;
        p.tid = ws.pid * 100 + static_cast<std::uint32_t>(t);
        p.backend = static_cast<std::uint32_t>(20000 + w * 16 + t);
        p.conn = 0x55550000'0000ULL + static_cast<std::uint64_t>(w * 16 + t) * 0x1000;
        p.scheduled_ns = start_ns + static_cast<std::uint64_t>(t) * 7 * kMs;
        p.free_ns = start_ns;
        threads_.push_back(std::move(p));
      }
    }
  }

  const std::vector<WorkerState>& workers() const { return workers_; }
  const std::vector<PoolThread>& threads() const { return threads_; }

  struct Produced {
    std::uint64_t calls = 0, statements = 0, gcs = 0;
  };

  // Queues every record that ends in (previous tick, tick_end] on the fake kernels, and the scrapes started by then.
  Produced produce(std::uint64_t tick_end, FakeLibpqKernel& pq, FakePgServerKernel& pgs, FakeGcKernel& gc,
                   std::map<std::string, sp::ScrapeResult>& scraped) {
    Produced n;
    // A ring buffer holds records in the order the calls returned, whatever thread made them.
    due_.clear();
    for (std::size_t i = 0; i < threads_.size(); ++i) {
      PoolThread& t = threads_[i];
      for (;;) {
        if (t.upcoming.empty()) plan_transaction(t);
        const Call& c = t.upcoming.front();
        if (c.end_ns > tick_end) break;
        due_.push_back({c, i});
        t.upcoming.pop_front();
      }
    }
    std::sort(due_.begin(), due_.end(), [](const auto& a, const auto& b) { return a.first.end_ns < b.first.end_ns; });
    for (const auto& [c, i] : due_) emit(threads_[i], c, pq, pgs);
    n.calls = n.statements = due_.size();
    for (auto& w : workers_) {
      while (w.next_gc_ns <= tick_end) {
        const int gen = w.gcs % 60 == 59 ? 2 : w.gcs % 10 == 9 ? 1 : 0;
        const std::uint64_t dur = gen == 2 ? between(40 * kMs, 120 * kMs)
                                  : gen == 1 ? between(8 * kMs, 20 * kMs)
                                             : between(1 * kMs, 6 * kMs);
        gc_event& e = gc.events.push();
        e.tgid = w.pid;
        e.tid = w.pid;
        e.start_ns = w.next_gc_ns - dur;
        e.end_ns = w.next_gc_ns;
        e.generation = gen;
        e.collected = static_cast<std::int64_t>(rng_() % 5000);
        w.gc_time_s += static_cast<double>(dur) / 1e9;
        ++w.gcs;
        ++n.gcs;
        w.next_gc_ns += between(800 * kMs, 1200 * kMs);
      }
      if (w.next_scrape_ns <= tick_end) {
        scraped[w.name] = scrape_of(w);
        w.next_scrape_ns += kScrapeEveryNs;
      }
    }
    return n;
  }

 private:
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + rng_() % (hi - lo + 1); }

  std::uint64_t statement_ns() {
    std::lognormal_distribution<double> d(std::log(400e3), 0.8);  // median 400 us
    return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(d(rng_)), 60 * kUs, 80 * kMs);
  }

  void plan_transaction(PoolThread& t) {
    // One in twenty is a statement outside any transaction (connection set-up, a bare select).
    const bool bare = rng_() % 20 == 0;
    int desc = 0;
    for (int pick = static_cast<int>(rng_() % static_cast<std::uint64_t>(total_weight_)); ; ++desc) {
      pick -= descs_[static_cast<std::size_t>(desc)].weight;
      if (pick < 0) break;
    }
    const Desc& d = descs_[static_cast<std::size_t>(desc)];
    std::vector<std::size_t> sequence;
    if (bare) {
      sequence.push_back(15);  // select_constant
    } else {
      sequence.push_back(kBegin);
      const std::size_t k = 1 + rng_() % 4;
      for (std::size_t i = 0; i < k; ++i) sequence.push_back(d.statements[rng_() % d.statements.size()]);
      sequence.push_back(kCommit);
    }
    std::exponential_distribution<double> jitter(1.0);
    const double per_thread = kCallsPerSecond / (kWorkers * kThreadsPerWorker);
    std::uint64_t at = std::max(t.scheduled_ns, t.free_ns + 30 * kUs);
    const std::uint64_t txn_start = at;
    WorkerState& w = workers_[static_cast<std::size_t>(t.worker)];
    for (std::size_t s : sequence) {
      const std::uint64_t dur = s == kBegin ? between(80 * kUs, 250 * kUs)
                                : s == kCommit ? between(150 * kUs, 900 * kUs)
                                               : statement_ns();
      t.upcoming.push_back({at, at + dur, s, bare ? -1 : desc, static_cast<int>(rng_() % kVariants)});
      if (s != kCommit) w.query_time_s += static_cast<double>(dur) * 1.05 / 1e9;
      at += dur + between(30 * kUs, 150 * kUs);  // Python between two calls
    }
    t.free_ns = t.upcoming.back().end_ns;
    if (!bare) w.txn_time_s[d.name] += static_cast<double>(t.free_ns - txn_start) * 1.1 / 1e9;
    t.scheduled_ns += static_cast<std::uint64_t>(static_cast<double>(sequence.size()) / per_thread * jitter(rng_) * 1e9);
  }

  void emit(const PoolThread& t, const Call& c, FakeLibpqKernel& pq, FakePgServerKernel& pgs) {
    const std::string_view sql = c.statement == kBegin    ? std::string_view("BEGIN")
                                 : c.statement == kCommit ? std::string_view("COMMIT")
                                                          : std::string_view(statements_[c.statement].variants[
                                                                static_cast<std::size_t>(c.variant)]);
    const WorkerState& w = workers_[static_cast<std::size_t>(t.worker)];
    pq_event& e = pq.events.push();
    e.tgid = w.pid;
    e.tid = t.tid;
    e.start_ns = c.start_ns;
    e.end_ns = c.end_ns;
    e.conn = t.conn;
    e.kind = SP_PQ_EXEC;
    // The kernel copies at most SP_PQ_TEXT_MAX - 1 bytes and says how many.
    e.text_len = static_cast<std::uint32_t>(std::min<std::size_t>(sql.size(), SP_PQ_TEXT_MAX - 1));
    std::memcpy(e.text, sql.data(), e.text_len);
    e.text[e.text_len] = 0;
    if (c.desc >= 0) {
      const char* name = descs_[static_cast<std::size_t>(c.desc)].name;
      e.desc_status = SP_PY_DESC_FOUND;
      e.desc_len = static_cast<std::uint32_t>(std::strlen(name));
      std::memcpy(e.desc, name, e.desc_len + 1);
    } else {
      e.desc_status = SP_PY_DESC_NO_FRAME;
      e.desc_len = 0;
      e.desc[0] = 0;
    }
    // The backend's statement: inside the call, less the trip both ways.
    pgs_query_event& s = pgs.events.push();
    s.tgid = t.backend;
    s.start_ns = c.start_ns + between(15 * kUs, 40 * kUs);
    s.end_ns = std::max<std::uint64_t>(s.start_ns + kUs, c.end_ns - between(15 * kUs, 40 * kUs));
    s.text_len = static_cast<std::uint32_t>(std::min<std::size_t>(sql.size(), SP_PGS_TEXT_MAX - 1));
    std::memcpy(s.text, sql.data(), s.text_len);
    s.text[s.text_len] = 0;
  }

  sp::ScrapeResult scrape_of(const WorkerState& w) const {
    auto families = std::make_shared<std::vector<sp::prom::Family>>();
    auto sum_family = [&](const std::string& name, double value) {
      sp::prom::Family f;
      f.name = name;
      f.type = "histogram";
      f.samples.push_back({name + "_count", {}, 1, std::nullopt});
      f.samples.push_back({name + "_sum", {}, value, std::nullopt});
      families->push_back(std::move(f));
    };
    sum_family("synapse_storage_query_time", w.query_time_s);
    sum_family("python_gc_time", w.gc_time_s);
    sp::prom::Family txn;
    txn.name = "synapse_storage_transaction_time_sum_total";
    txn.type = "counter";
    for (const auto& [desc, s] : w.txn_time_s) {
      txn.samples.push_back({"synapse_storage_transaction_time_sum_total", {{"desc", desc}}, s, std::nullopt});
    }
    families->push_back(std::move(txn));
    sp::ScrapeResult r;
    r.worker_app = w.pid == 1001 ? "synapse.app.homeserver" : "synapse.app.generic_worker";
    r.up = true;
    r.started = std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds(w.next_scrape_ns)));
    r.families = std::move(families);
    return r;
  }

  std::mt19937_64 rng_;
  std::vector<Statement> statements_;
  std::vector<Desc> descs_;
  int total_weight_ = 0;
  std::vector<WorkerState> workers_;
  std::vector<PoolThread> threads_;
  std::vector<std::pair<Call, std::size_t>> due_;  // calls of this tick, with their thread
};

// The agent's userspace half as the profiling loop wires it, on fake kernels.
struct Pipeline {
  FakeGcKernel* gc_kernel = nullptr;
  FakeLibpqKernel* pq_kernel = nullptr;
  FakePgServerKernel* pgs_kernel = nullptr;
  std::unique_ptr<sp::agent::GcFamily> gc;
  std::unique_ptr<sp::agent::LibpqFamily> libpq;
  std::unique_ptr<sp::agent::PgServerFamily> pg;
  sp::CorrelationHub hub;

  Pipeline(const std::string& proc_root, const Workload& load, std::uint64_t now_ns) {
    gc = std::make_unique<sp::agent::GcFamily>(proc_root, [this](std::string&) -> std::unique_ptr<sp::agent::GcKernel> {
      auto k = std::make_unique<FakeGcKernel>();
      gc_kernel = k.get();
      return k;
    });
    libpq = std::make_unique<sp::agent::LibpqFamily>(
        proc_root, [this](std::string&) -> std::unique_ptr<sp::agent::LibpqKernel> {
          auto k = std::make_unique<FakeLibpqKernel>();
          pq_kernel = k.get();
          return k;
        });
    // Each pool thread's connection is served by its own backend: the linker knows them all.
    std::map<int, int> worker_of_backend;
    for (const auto& t : load.threads()) {
      worker_of_backend[static_cast<int>(t.backend)] = static_cast<int>(load.workers()[static_cast<std::size_t>(t.worker)].pid);
    }
    pg = std::make_unique<sp::agent::PgServerFamily>(
        proc_root,
        [this](std::string&) -> std::unique_ptr<sp::agent::PgServerKernel> {
          auto k = std::make_unique<FakePgServerKernel>();
          pgs_kernel = k.get();
          return k;
        },
        [worker_of_backend](const std::vector<int>&, const std::vector<int>& backends, std::string&) {
          std::vector<sp::BackendLink> links;
          for (int b : backends) {
            auto it = worker_of_backend.find(b);
            if (it != worker_of_backend.end()) links.push_back({b, it->second, "tcp"});
          }
          return links;
        });
    pg->set_fingerprints(false);  // as `run` does (a recording keeps them)
    std::string why;
    if (!gc->start(why) || !libpq->start(why) || !pg->start(why)) {
      std::fprintf(stderr, "fake kernels refused: %s\n", why.c_str());
      std::exit(2);
    }
    for (sp::agent::ProbeFamily* f : families()) f->set_sink(&hub);

    sp::ScanResult scan;
    for (const auto& w : load.workers()) {
      sp::WorkerInfo info;
      info.key.pid = static_cast<int>(w.pid);
      info.key.start_time = 1;
      info.host_pid = static_cast<int>(w.pid);
      info.worker_name = w.name;
      info.worker_app = w.pid == 1001 ? "synapse.app.homeserver" : "synapse.app.generic_worker";
      info.is_main = w.pid == 1001;
      info.python_path = "/usr/bin/python3.11";
      info.libpq_path = "/usr/lib/x86_64-linux-gnu/libpq.so.5.15";  // non-empty: libpq attaches
      info.metrics_url = "http://127.0.0.1:9000/_synapse/metrics";
      scan.workers.push_back(info);
    }
    sp::PostgresProcess postmaster;
    postmaster.key.pid = 500;
    postmaster.postmaster = true;
    postmaster.exe_path = "/usr/lib/postgresql/15/bin/postgres";
    scan.postgres.push_back(postmaster);
    for (const auto& t : load.threads()) {
      sp::PostgresProcess b;
      b.key.pid = static_cast<int>(t.backend);
      b.ppid = 500;
      b.exe_path = postmaster.exe_path;
      b.role = "synapse synapse 127.0.0.1(40000) idle";
      scan.postgres.push_back(b);
    }
    sp::ScanDiff diff;
    diff.added = scan.workers;
    for (sp::agent::ProbeFamily* f : families()) f->update(scan, diff);
    hub.update_workers(scan, diff, now_ns);
  }

  std::array<sp::agent::ProbeFamily*, 3> families() { return {gc.get(), libpq.get(), pg.get()}; }

  // What ProfilingLoop::poll_all does every 250 ms.
  void poll(std::uint64_t now_ns, const std::map<std::string, sp::ScrapeResult>& scraped) {
    for (sp::agent::ProbeFamily* f : families()) f->poll();
    hub.flush(now_ns, scraped);
  }
};

// Everything the families and the hub computed from the stream, one value a line: an optimisation must leave this
// file unchanged.
void dump(const std::string& path, Pipeline& pipe, const sp::HubSnapshot& hub) {
  std::ofstream out(path);
  auto who = [](const sp::WorkerLabels& w) { return w.worker + "/" + w.worker_app; };
  const auto db = pipe.libpq->snapshot();
  for (const auto& [k, h] : db.series) {
    out << "client " << who(k.first) << " " << k.second.verb << " " << k.second.table << " " << h.count << " "
        << h.sum_ns << "\n";
  }
  for (const auto& [k, d] : db.desc) out << "desc " << who(k.first) << " " << k.second << " " << d.count << " " << d.sum_ns << "\n";
  for (const auto& [k, n] : db.desc_walks) out << "walk " << who(k.first) << " " << k.second << " " << n << "\n";
  for (const auto& [k, h] : pipe.pg->snapshot().queries) {
    out << "server " << who(k.first) << " " << k.second << " " << h.count << " " << h.sum_ns << "\n";
  }
  for (const auto& [w, ns] : hub.overlap_ns) out << "overlap " << who(w) << " " << ns << "\n";
  for (const auto& [k, t] : hub.desc_server) {
    out << "desc_server " << who(k.first) << " " << k.second << " " << t.statements << " " << t.statement_ns << " "
        << t.lock_waits << " " << t.lock_wait_ns << "\n";
  }
  out.precision(17);
  for (const auto& [k, r] : hub.desc_ratio) out << "desc_ratio " << who(k.first) << " " << k.second << " " << r << "\n";
  for (const auto& [w, c] : hub.correlation) {
    out << "correlation " << who(w) << " " << c.python_overhead_seconds.value_or(-1) << " "
        << c.gc_coverage_ratio.value_or(-1) << " " << c.window_seconds;
    if (c.time_share) {
      for (double v : *c.time_share) out << " " << v;
    }
    out << "\n";
  }
}

void BM_Replay(benchmark::State& state) {
  const auto proc_root = std::filesystem::temp_directory_path() / ("sp_replay_proc." + std::to_string(getpid()));
  std::filesystem::create_directories(proc_root);  // an empty /proc: no process to plan for
  const std::uint64_t start_ns = 1'000 * kSec;
  Workload load(start_ns);
  Pipeline pipe(proc_root.string(), load, start_ns);

  std::uint64_t tick_end = start_ns;
  Workload::Produced total;
  std::map<std::string, sp::ScrapeResult> scraped;
  auto produce = [&] {
    tick_end += kTickNs;
    scraped.clear();
    const auto n = load.produce(tick_end, *pipe.pq_kernel, *pipe.pgs_kernel, *pipe.gc_kernel, scraped);
    total.calls += n.calls;
    total.statements += n.statements;
    total.gcs += n.gcs;
    return n;
  };
  const auto warmup_ticks = static_cast<std::uint64_t>(g_warmup_s * 1e9) / kTickNs;
  for (std::uint64_t i = 0; i < warmup_ticks; ++i) {
    produce();
    pipe.poll(tick_end + kMs, scraped);
  }

  std::uint64_t cpu_ns = 0, calls = 0, statements = 0, gcs = 0, ticks = 0;
  const auto trim_ticks = static_cast<std::uint64_t>(g_trim_every_s * 1e9) / kTickNs;
  for (auto _ : state) {
    state.PauseTiming();
    const auto n = produce();
    state.ResumeTiming();
    const std::uint64_t t0 = thread_cpu_ns();
    pipe.poll(tick_end + kMs, scraped);
    if (trim_ticks && ticks % trim_ticks == trim_ticks - 1) malloc_trim(0);
    cpu_ns += thread_cpu_ns() - t0;
    calls += n.calls;
    statements += n.statements;
    gcs += n.gcs;
    ++ticks;
  }
  std::filesystem::remove_all(proc_root);

  // The pipeline must have counted everything it was given.
  std::uint64_t client_count = 0, server_count = 0, overlap_ns = 0, desc_matched = 0;
  for (const auto& [key, h] : pipe.libpq->snapshot().series) client_count += h.count;
  for (const auto& [key, h] : pipe.pg->snapshot().queries) server_count += h.count;
  const sp::HubSnapshot hub = pipe.hub.snapshot();
  for (const auto& [w, ns] : hub.overlap_ns) overlap_ns += ns;
  for (const auto& [key, t] : hub.desc_server) {
    if (!key.second.empty() && key.second != "unmatched") desc_matched += t.statements;
  }
  // Desc ratios need two scrapes of a worker (every 15 s) inside the run.
  const bool ratios_due = static_cast<double>(tick_end - start_ns) / 1e9 > 20;
  if (client_count != total.calls || server_count != total.statements || overlap_ns == 0 || desc_matched == 0 ||
      (ratios_due && hub.desc_ratio.empty())) {
    g_failed = true;
    const std::string why = "pipeline lost events: calls " + std::to_string(client_count) + "/" +
                            std::to_string(total.calls) + ", statements " + std::to_string(server_count) + "/" +
                            std::to_string(total.statements) + ", overlap " + std::to_string(overlap_ns) +
                            " ns, statements matched to a desc " + std::to_string(desc_matched) + ", desc ratios " +
                            std::to_string(hub.desc_ratio.size());
    state.SkipWithError(why.c_str());
    return;
  }
  if (!g_dump.empty()) dump(g_dump, pipe, hub);
  const double event_seconds = static_cast<double>(ticks * kTickNs) / 1e9;
  state.counters["ns_per_call"] = calls ? static_cast<double>(cpu_ns) / static_cast<double>(calls) : 0;
  state.counters["calls_per_s"] = static_cast<double>(calls) / event_seconds;
  state.counters["stmts_per_s"] = static_cast<double>(statements) / event_seconds;
  state.counters["gc_per_s"] = static_cast<double>(gcs) / event_seconds;
  state.counters["cpu_share"] = static_cast<double>(cpu_ns) / (event_seconds * 1e9);  // of one core
}

bool take_arg(std::string_view a, std::string_view name, double& out) {
  if (a.rfind(name, 0) != 0) return false;
  out = std::atof(std::string(a.substr(name.size())).c_str());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    double v = 0;
    if (a.rfind("--data-dir=", 0) == 0) {
      g_data_dir = std::string(a.substr(11));
    } else if (take_arg(a, "--replay-warmup=", v)) {
      g_warmup_s = v;
    } else if (a.rfind("--replay-dump=", 0) == 0) {
      g_dump = std::string(a.substr(14));
    } else if (take_arg(a, "--replay-trim-every=", v)) {
      g_trim_every_s = v;
    } else if (take_arg(a, "--replay-seconds=", v)) {
      g_measure_s = v;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  sp::log::set_level(sp::log::Level::Error);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const auto ticks = std::max<std::int64_t>(1, static_cast<std::int64_t>(g_measure_s * 1e9) / static_cast<std::int64_t>(kTickNs));
  benchmark::RegisterBenchmark("BM_Replay", BM_Replay)->Iterations(ticks)->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
