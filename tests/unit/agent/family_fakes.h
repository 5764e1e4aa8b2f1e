// Stand-ins for what the postgres and block I/O families see of the world, so that their ordering rules run without
// root or BPF: a fake of each kernel interface that behaves like the BPF side (a completed statement or request lands
// in the ring and in the per-process maps at once, take() really removes), a sink that keeps every event, a scripted
// backend linker and a scripted set of backend decisions, and discovery scans built in code.
#pragma once

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "../../common/temp_dir.h"
#include "family_test_util.h"
#include "agent/families/backend_decisions.h"
#include "agent/families/blockio_kernel.h"
#include "agent/families/pgserver_family.h"
#include "agent/families/pgserver_kernel.h"
#include "core/model/events.h"
#include "core/model/latency_histogram.h"
#include "core/proc/discovery.h"

namespace sp {
// Worker labels in gtest's failure messages.
inline void PrintTo(const WorkerLabels& w, std::ostream* os) { *os << w.worker << " (" << w.worker_app << ")"; }
}  // namespace sp

namespace sp::agent::test {

// Times of the fakes' records: CLOCK_MONOTONIC-like, each record starting after the previous one ended.
class FakeClock {
 public:
  // [start, end] of something that takes `duration_ns`, from now on.
  std::pair<std::uint64_t, std::uint64_t> span(std::uint64_t duration_ns) {
    const std::uint64_t start = now_ns_;
    now_ns_ += duration_ns + 1000;
    return {start, start + duration_ns};
  }

 private:
  std::uint64_t now_ns_ = 5'000'000'000;
};

// bpf/pgserver.bpf.c without the kernel: completed statements and lock waits wait in their rings until drained, the
// per-backend counts (lock waits, commits, aborts, statements whose record was lost) sit in a map until erased.
class FakePgServerKernel : public PgServerKernel {
 public:
  // Like the kernel with per-process uprobes, only backends the family attached trap: what the others do is not
  // seen (counted in untrapped() for the tests).
  // A statement of `backend` ran: its record goes to the ring if the backend is attached.
  pgs_query_event statement(std::uint32_t backend, std::string_view sql, std::uint64_t duration_ns = 2'000'000) {
    pgs_query_event e{};
    if (!trapped(backend)) return e;
    e.tgid = backend;
    std::tie(e.start_ns, e.end_ns) = clock_.span(duration_ns);
    e.text_len = static_cast<std::uint32_t>(std::min<std::size_t>(sql.size(), SP_PGS_TEXT_MAX - 1));
    std::memcpy(e.text, sql.data(), e.text_len);
    queries_.push_back(e);
    return e;
  }
  // A statement whose record the ring could not take: counted in the backend's map entry only.
  void lost_statement(std::uint32_t backend, std::uint64_t duration_ns) {
    if (!trapped(backend)) return;
    auto& s = backends_[backend];
    ++s.lost_buckets[LatencyHistogram::bucket_of(duration_ns)];
    ++s.lost_count;
    s.lost_sum_ns += duration_ns;
    ++events_lost_;
  }
  // A heavyweight lock wait: counted in the map entry and recorded in the lock ring, like the BPF side does.
  pgs_lock_event lock_wait(std::uint32_t backend, std::uint64_t duration_ns) {
    if (!trapped(backend)) return {};
    auto& s = backends_[backend];
    ++s.lock_buckets[LatencyHistogram::bucket_of(duration_ns)];
    ++s.lock_count;
    s.lock_sum_ns += duration_ns;
    pgs_lock_event e{};
    e.tgid = backend;
    std::tie(e.start_ns, e.end_ns) = clock_.span(duration_ns);
    locks_.push_back(e);
    return e;
  }
  void commit(std::uint32_t backend) {
    if (trapped(backend)) ++backends_[backend].commits;
  }
  void abort(std::uint32_t backend) {
    if (trapped(backend)) ++backends_[backend].aborts;
  }
  // Probe hits of a backend that was not attached (none reached the ring or the counts).
  std::size_t untrapped(std::uint32_t backend) const {
    auto it = untrapped_.find(backend);
    return it == untrapped_.end() ? 0 : it->second;
  }
  bool is_attached(int pid) const { return attached_.count(pid) != 0; }
  // The binary path the backend was attached with.
  std::string attached_path(int pid) const {
    auto it = paths_.find(pid);
    return it == paths_.end() ? "" : it->second;
  }
  // The next attach of `pid` fails, as for a backend that has just exited.
  void fail_attach(int pid) { fail_.insert(pid); }

  bool has_backend(std::uint32_t backend) const { return backends_.count(backend) != 0; }
  std::size_t ring_size() const { return queries_.size(); }
  // What the family asked, in order: "attach PID", "detach PID", "drain", "drain_locks", "read_backends",
  // "erase_backend PID".
  const std::vector<std::string>& calls() const { return calls_; }
  std::size_t count_calls(const std::string& call) const {
    return static_cast<std::size_t>(std::count(calls_.begin(), calls_.end(), call));
  }

  bool attach(int pid, const std::string& path, std::string& error) override {
    calls_.push_back(fmt::format("attach {}", pid));
    if (fail_.erase(pid)) {
      error = fmt::format("attach USDT postgresql:query__start in {} for backend {}: No such process", path, pid);
      return false;
    }
    attached_.insert(pid);
    paths_[pid] = path;
    return true;
  }
  void detach(int pid) override {
    calls_.push_back(fmt::format("detach {}", pid));
    attached_.erase(pid);
  }
  bool attached(int pid) const override { return attached_.count(pid) != 0; }
  std::size_t attached_count() const override { return attached_.size(); }
  int drain(const std::function<void(const pgs_query_event&)>& fn) override {
    calls_.push_back("drain");
    return drain_ring(queries_, fn);
  }
  int drain_locks(const std::function<void(const pgs_lock_event&)>& fn) override {
    calls_.push_back("drain_locks");
    return drain_ring(locks_, fn);
  }
  std::vector<int> ring_fds() const override { return {}; }
  std::vector<std::pair<std::uint32_t, pgs_backend_stats>> read_backends() const override {
    calls_.push_back("read_backends");
    return {backends_.begin(), backends_.end()};
  }
  void erase_backend(int tgid) override {
    calls_.push_back(fmt::format("erase_backend {}", tgid));
    backends_.erase(static_cast<std::uint32_t>(tgid));
  }
  std::uint64_t events_lost() const override { return events_lost_; }
  std::uint64_t hook_misses() const override { return 0; }

 private:
  template <typename Record>
  static int drain_ring(std::vector<Record>& ring, const std::function<void(const Record&)>& fn) {
    auto records = std::move(ring);
    ring.clear();
    for (const auto& r : records) fn(r);
    return static_cast<int>(records.size());
  }

  FakeClock clock_;
  std::vector<pgs_query_event> queries_;
  std::vector<pgs_lock_event> locks_;
  bool trapped(std::uint32_t backend) {
    if (attached_.count(static_cast<int>(backend))) return true;
    ++untrapped_[backend];
    return false;
  }

  std::map<std::uint32_t, pgs_backend_stats> backends_;
  std::set<int> attached_;
  std::map<int, std::string> paths_;
  std::set<int> fail_;
  std::map<std::uint32_t, std::size_t> untrapped_;
  std::uint64_t events_lost_ = 0;
  mutable std::vector<std::string> calls_;
};

// bpf/blockio.bpf.c without the kernel: a completed request is added to its (process, disk, op) entry and recorded in
// the ring, like the BPF side does.
class FakeBlockIoKernel : public BlockIoKernel {
 public:
  sp_io_event complete(std::uint32_t tgid, std::uint32_t dev, std::uint32_t op, std::uint32_t bytes,
                       std::uint64_t queue_ns = 20'000, std::uint64_t device_ns = 300'000) {
    auto& h = entries_[{tgid, dev, op}];
    ++h.queue[IoHistogram::bucket_of(queue_ns)];
    ++h.queue_count;
    h.queue_sum_ns += queue_ns;
    ++h.device[IoHistogram::bucket_of(device_ns)];
    ++h.device_count;
    h.device_sum_ns += device_ns;
    h.bytes += bytes;
    sp_io_event e{};
    e.tgid = tgid;
    e.dev = dev;
    e.op = op;
    e.bytes = bytes;
    auto [start, complete] = clock_.span(queue_ns + device_ns);
    e.start_ns = start;
    e.issue_ns = start + queue_ns;
    e.complete_ns = complete;
    ring_.push_back(e);
    return e;
  }

  bool has_entry(std::uint32_t tgid, std::uint32_t dev, std::uint32_t op) const {
    return entries_.count({tgid, dev, op}) != 0;
  }
  // Whether the family took (read and removed) any entry of `tgid`.
  bool took_from(std::uint32_t tgid) const {
    return std::any_of(calls_.begin(), calls_.end(),
                       [&](const std::string& c) { return c.rfind(fmt::format("take {} ", tgid), 0) == 0; });
  }
  // What the family asked, in order: "read", "take TGID DEV OP" (also when there was nothing to take), "drain".
  const std::vector<std::string>& calls() const { return calls_; }

  const std::string& hooks() const override { return hooks_; }
  std::vector<std::pair<sp_io_key, sp_io_hist>> read() const override {
    calls_.push_back("read");
    std::vector<std::pair<sp_io_key, sp_io_hist>> out;
    for (const auto& [k, h] : entries_) {
      sp_io_key key{};
      std::tie(key.tgid, key.dev, key.op) = k;
      out.emplace_back(key, h);
    }
    return out;
  }
  bool take(const sp_io_key& key, sp_io_hist& out) override {
    calls_.push_back(fmt::format("take {} {} {}", key.tgid, key.dev, key.op));
    auto it = entries_.find({key.tgid, key.dev, key.op});
    if (it == entries_.end()) return false;
    out = it->second;
    entries_.erase(it);
    return true;
  }
  int drain(const std::function<void(const sp_io_event&)>& fn) override {
    calls_.push_back("drain");
    auto records = std::move(ring_);
    ring_.clear();
    for (const auto& r : records) fn(r);
    return static_cast<int>(records.size());
  }
  int ring_fd() const override { return -1; }
  std::uint64_t events_lost() const override { return 0; }
  std::uint64_t hook_misses() const override { return 0; }

 private:
  const std::string hooks_ = "fake: block_io_start, block_rq_issue, block_rq_complete";
  FakeClock clock_;
  std::map<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>, sp_io_hist> entries_;
  std::vector<sp_io_event> ring_;
  mutable std::vector<std::string> calls_;
};

// An opener handing the family `Fake` while the test keeps a pointer to it (the family owns it).
template <typename Fake, typename Kernel>
std::function<std::unique_ptr<Kernel>(std::string&)> open_fake(Fake*& keep) {
  return [&keep](std::string&) -> std::unique_ptr<Kernel> {
    auto fake = std::make_unique<Fake>();
    keep = fake.get();
    return fake;
  };
}

// Every event the families hand on, in order.
class CapturingSink : public EventSink {
 public:
  void query(const QueryEvent& e) override { queries.push_back(e); }
  void lock_wait(const LockWait& e) override { lock_waits.push_back(e); }
  void io_request(const IoEvent& e) override { io_requests.push_back(e); }

  std::vector<QueryEvent> queries;
  std::vector<LockWait> lock_waits;
  std::vector<IoEvent> io_requests;
};

// The socket tables as a script: which worker each backend's client is, right now. Like BackendMapper, it only
// links a backend to one of the workers it is given.
class ScriptedLinker {
 public:
  void connect(int backend_pid, int worker_pid) { links_[backend_pid] = worker_pid; }
  void disconnect(int backend_pid) { links_.erase(backend_pid); }
  // The backends each call asked about, in order.
  const std::vector<std::vector<int>>& asked() const { return asked_; }

  PgServerFamily::BackendLinker linker() {
    return [this](const std::vector<int>& workers, const std::vector<int>& backends, std::string&) {
      asked_.push_back(backends);
      std::vector<BackendLink> out;
      for (int b : backends) {
        auto it = links_.find(b);
        if (it != links_.end() && std::find(workers.begin(), workers.end(), it->second) != workers.end()) {
          out.push_back({b, it->second, "unix"});
        }
      }
      return out;
    };
  }

 private:
  std::map<int, int> links_;
  std::vector<std::vector<int>> asked_;
};

// The postgres family's decisions as a script, for block I/O.
class ScriptedDecisions : public BackendDecisions {
 public:
  std::map<int, WorkerLabels> decided;
  std::set<int> undecided;
  std::map<int, WorkerLabels> backend_decisions() const override { return decided; }
  std::set<int> undecided_backends() const override { return undecided; }
};

// A Synapse worker as discovery reports it (host PID = PID in proc_root).
inline WorkerInfo worker(int pid, const std::string& name, const std::string& app = "synapse.app.generic_worker") {
  return sp::test::make_worker(pid, name, app);
}

inline constexpr int kPostmasterPid = 900;

// A PostgreSQL backend of the cluster whose postmaster is kPostmasterPid.
inline PostgresProcess backend(int pid) {
  PostgresProcess p;
  p.key = {pid, 2000u + static_cast<std::uint64_t>(pid)};
  p.ppid = kPostmasterPid;
  p.exe_path = "/usr/lib/postgresql/16/bin/postgres";
  p.role = "synapse synapse [local] idle";
  return p;
}

// Successive discovery scans: each one built from the processes given, diffed against the previous one.
class Scans {
 public:
  std::pair<ScanResult, ScanDiff> next(std::vector<WorkerInfo> workers, const std::vector<PostgresProcess>& backends) {
    ScanResult r;
    r.workers = std::move(workers);
    PostgresProcess postmaster = backend(kPostmasterPid);
    postmaster.postmaster = true;
    postmaster.ppid = 1;
    r.postgres.push_back(postmaster);  // its binary is not attached: there is no /proc/900/exe under the fake root
    r.postgres.insert(r.postgres.end(), backends.begin(), backends.end());
    ScanDiff diff = state_.update(r);
    return {std::move(r), std::move(diff)};
  }

 private:
  DiscoveryState state_;
};

using sp::test::TempDir;

}  // namespace sp::agent::test
