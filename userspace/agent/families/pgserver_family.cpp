#include "agent/families/pgserver_family.h"

#include <fmt/core.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <string_view>

#include "core/proc/socket_inventory.h"
#include "core/util/log.h"
#include "exporter/probe_metrics.h"
#include "core/postgres/sql_fingerprint.h"

namespace sp::agent {
PgServerFamily::PgServerFamily(std::string proc_root, PgServerKernelOpener open, BackendLinker link)
    : KernelFamily(std::move(open)), proc_root_(std::move(proc_root)), link_(std::move(link)) {
  if (!link_) {
    link_ = [mapper = std::make_shared<BackendMapper>(proc_root_)](const std::vector<int>& workers,
                                                                   const std::vector<int>& backends,
                                                                   std::string& error) {
      return mapper->map(workers, backends, error);
    };
  }
}

PgServerFamily::~PgServerFamily() = default;

const WorkerLabels& PgServerFamily::labels_of(int backend_pid) const {
  auto it = backend_labels_.find(backend_pid);
  return it == backend_labels_.end() ? kOtherWorker : it->second;
}

void PgServerFamily::map_backends(const std::vector<int>& backend_pids, bool final) {
  std::vector<int> undecided;
  for (int pid : backend_pids) {
    if (!backend_labels_.count(pid)) undecided.push_back(pid);
  }
  if (undecided.empty()) return;
  std::vector<int> workers;
  for (const auto& [pid, labels] : worker_labels_) workers.push_back(pid);
  std::string error;
  auto links = link_(workers, undecided, error);
  if (!error.empty()) log::debug("postgres: mapping backends to workers: {}", error);
  for (const auto& link : links) {
    auto it = worker_labels_.find(link.worker_pid);
    if (it == worker_labels_.end()) continue;
    backend_labels_[link.backend_pid] = it->second;
    log::debug("postgres: backend {} serves worker {} over {}", link.backend_pid, it->second.worker, link.transport);
  }
  if (!final) return;
  for (int pid : undecided) {
    if (backend_labels_.try_emplace(pid, kOtherWorker).second) {
      log::debug("postgres: backend {} serves no worker we profile{}", pid, error.empty() ? "" : " (" + error + ")");
    }
  }
}

void PgServerFamily::account(const pgs_query_event& e) {
  std::uint32_t len = std::min<std::uint32_t>(e.text_len, SP_PGS_TEXT_MAX - 1);
  const std::string_view text(e.text, len);
  const bool cut = len >= SP_PGS_TEXT_MAX - 1;
  const WorkerLabels& labels = labels_of(static_cast<int>(e.tgid));
  // The series need the verb only; the whole fingerprint is made where a recording may keep it (every statement of
  // every backend goes through here: at pgbench rates the fingerprint was most of the agent's CPU).
  SqlFingerprint fp;
  if (fingerprints_ && !(labels == kOtherWorker)) {
    fp = fingerprint_sql(text, cut);
  } else {
    fp.verb = sql_verb(text, cut);
  }
  queries_[{labels, fp.verb}].record(e.end_ns - e.start_ns);
  if (!(labels == kOtherWorker)) {
    QueryEvent q;
    q.worker = labels;
    q.server_side = true;
    q.tgid = e.tgid;
    q.tid = e.tgid;
    q.start_ns = e.start_ns;
    q.end_ns = e.end_ns;
    q.fingerprint_id = fp.id;
    q.fingerprint = std::move(fp.text);
    q.verb = std::move(fp.verb);
    q.table = std::move(fp.table);
    sink().query(q);
  }
}

void PgServerFamily::attribute(const std::vector<pgs_query_event>& events) {
  // Only attached backends trap, and only decided ones are attached: every record has its worker.
  for (const auto& e : events) account(e);
}

void PgServerFamily::attach_backends() {
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t attached = 0;
  std::set<WorkerLabels> present;
  for (const auto& [pid, labels] : worker_labels_) present.insert(labels);
  for (const auto& [pid, labels] : backend_labels_) {
    if (labels == kOtherWorker || !present.count(labels) || kernel_->attached(pid) || attach_failed_.count(pid)) {
      continue;
    }
    auto bin = binary_of_.find(pid);
    if (bin == binary_of_.end()) continue;
    std::string error;
    if (kernel_->attach(pid, bin->second, error)) {
      log::debug("postgres: attached to backend {} of worker {}", pid, labels.worker);
      ++attached;
      continue;
    }
    // Not retried: a backend that cannot be attached now (it exited, most often) will not be later.
    attach_failed_.insert(pid);
    struct stat st {};
    if (stat(fmt::format("{}/{}", proc_root_, pid).c_str(), &st) != 0) {
      log::debug("postgres: backend {} exited before it was attached", pid);
      continue;
    }
    log::warn("postgres: cannot attach: {}", error);
    if (attach_errors_.size() < kMaxAttachErrors) attach_errors_.push_back(error);
  }
  if (attached > 0) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
    log::info("postgres: attached to {} backend{} in {:.1f} ms", attached, attached == 1 ? "" : "s",
              static_cast<double>(us.count()) / 1e3);
  }
}

void PgServerFamily::detach_backend(int pid) {
  if (kernel_->attached(pid)) {
    kernel_->detach(pid);
    log::debug("postgres: detached from backend {}", pid);
  }
}

void PgServerFamily::update(const ScanResult& current, const ScanDiff&) {
  if (!kernel_) return;
  std::lock_guard lock(mutex_);
  postmasters_.clear();
  std::set<int> live;
  for (const auto& p : current.postgres) {
    if (p.postmaster) {
      postmasters_[p.key.pid] = p.exe_path;
    } else {
      live.insert(p.key.pid);
      // Through the backend's own root: a binary a container maps from its own mount namespace attached by the host
      // path would never fire.
      binary_of_[p.key.pid] = fmt::format("{}/{}/root{}", proc_root_, p.key.pid, p.exe_path);
    }
  }

  worker_labels_.clear();
  for (const auto& w : current.workers) worker_labels_[w.key.pid] = sp::labels_of(w);

  // Backends decided before this scan read /proc (by a rescan, or at a poll since for a connection opened between two
  // scans): one this scan does not list has exited.
  std::set<int> decided_before;
  for (const auto& [pid, labels] : backend_labels_) decided_before.insert(pid);
  // Records and lock waits drained first: those of a backend that has exited since the last poll must reach the sink
  // before it is let go below.
  std::vector<pgs_query_event> drained;
  kernel_->drain([&](const pgs_query_event& e) { drained.push_back(e); });
  std::vector<pgs_lock_event> locks;
  kernel_->drain_locks([&](const pgs_lock_event& e) { locks.push_back(e); });
  attribute(drained);
  hand_on_lock_waits(locks);
  // Every backend this scan lists is decided now: its client existed before it, so it is in this scan too.
  map_backends(std::vector<int>(live.begin(), live.end()), true);
  looked_up_.clear();
  // Backends that have exited: their kernel entries still hold what they did since the last poll (often their last
  // transaction), so they are read once more before their counts are retired and the entries freed.
  std::vector<int> gone;
  for (int pid : decided_before) {
    if (!live.count(pid)) gone.push_back(pid);
  }
  if (!gone.empty()) read_totals();
  for (int pid : gone) {
    detach_backend(pid);
    backends_.retire(pid);
    kernel_->erase_backend(pid);
    backend_labels_.erase(pid);
  }
  for (auto it = binary_of_.begin(); it != binary_of_.end();) {
    it = live.count(it->first) ? std::next(it) : binary_of_.erase(it);
  }
  for (auto it = attach_failed_.begin(); it != attach_failed_.end();) {
    it = live.count(*it) ? std::next(it) : attach_failed_.erase(it);
  }
  // A backend whose worker no scan lists any more serves nobody we profile: its traps are let go (its counts stay
  // until --forget-after, like its worker's; a worker that comes back under the same name is attached again).
  std::set<WorkerLabels> present;
  for (const auto& [pid, labels] : worker_labels_) present.insert(labels);
  for (const auto& [pid, labels] : backend_labels_) {
    if (!present.count(labels)) detach_backend(pid);
  }
  live_backends_ = std::move(live);
  attach_backends();
}

void PgServerFamily::drain() {
  if (!kernel_) return;
  std::vector<pgs_query_event> events;
  kernel_->drain([&](const pgs_query_event& e) { events.push_back(e); });
  std::vector<pgs_lock_event> locks;
  kernel_->drain_locks([&](const pgs_lock_event& e) { locks.push_back(e); });
  std::lock_guard lock(mutex_);
  attribute(std::move(events));
  hand_on_lock_waits(locks);
}

void PgServerFamily::hand_on_lock_waits(const std::vector<pgs_lock_event>& locks) {
  for (const auto& l : locks) {
    // Only backends already mapped: a lock wait is never the first thing a new connection does.
    auto it = backend_labels_.find(static_cast<int>(l.tgid));
    if (it != backend_labels_.end() && !(it->second == kOtherWorker)) {
      LockWait w;
      w.worker = it->second;
      w.backend = l.tgid;
      w.start_ns = l.start_ns;
      w.end_ns = l.end_ns;
      sink().lock_wait(w);
    }
  }
}

void PgServerFamily::poll() {
  if (!kernel_) return;
  drain();
  std::lock_guard lock(mutex_);
  // The fast path for new connections: the backends forked since the last scan, looked up once each (a socket dump
  // walks the kernel's connection tables), attached at once if they serve a known worker. Those left undecided (a
  // worker started after the last scan, PostgreSQL's own helpers, other clients) are decided by the next rescan.
  std::vector<int> fresh;
  for (const auto& [pm, exe] : postmasters_) {
    std::ifstream in(fmt::format("{}/{}/task/{}/children", proc_root_, pm, pm));
    int pid = 0;
    while (in >> pid) {
      if (pid > 0 && !live_backends_.count(pid) && !backend_labels_.count(pid) && looked_up_.insert(pid).second) {
        fresh.push_back(pid);
        binary_of_[pid] = fmt::format("{}/{}/root{}", proc_root_, pid, exe);
      }
    }
  }
  if (!fresh.empty()) {
    map_backends(fresh, false);
    attach_backends();
  }
  read_totals();
}

void PgServerFamily::read_totals() {
  for (const auto& [tgid, s] : kernel_->read_backends()) {
    int pid = static_cast<int>(tgid);
    if (!backend_labels_.count(pid)) continue;  // not decided yet: counted once it is
    BackendTotals t;
    t.lost_queries = LatencyHistogram::from_kernel(s.lost_buckets, s.lost_count, s.lost_sum_ns);
    t.lock_waits = LatencyHistogram::from_kernel(s.lock_buckets, s.lock_count, s.lock_sum_ns);
    t.commits = s.commits;
    t.aborts = s.aborts;
    backends_.set_live(pid, labels_of(pid), 0, t);
  }
}

void PgServerFamily::forget_worker(const WorkerLabels& w) {
  std::lock_guard lock(mutex_);
  erase_worker(queries_, w);
  backends_.forget(w);
}

DbServerSnapshot PgServerFamily::snapshot() const {
  DbServerSnapshot snap;
  std::lock_guard lock(mutex_);
  snap.queries = queries_;
  for (const auto& [key, t] : backends_.totals()) {
    snap.backends[key.first].add(t);
    if (t.lost_queries.count) snap.queries[{key.first, "unknown"}].add(t.lost_queries);
  }
  snap.backends_attached = kernel_ ? kernel_->attached_count() : 0;
  snap.attach_errors = attach_errors_;
  snap.events_lost = kernel_ ? kernel_->events_lost() : 0;
  for (const auto& [pid, labels] : backend_labels_) (labels == kOtherWorker ? snap.backends_unmapped : snap.backends_mapped)++;
  return snap;
}

}  // namespace sp::agent

namespace sp::agent {

std::map<int, WorkerLabels> PgServerFamily::backend_decisions() const {
  std::lock_guard lock(mutex_);
  return backend_labels_;
}

std::set<int> PgServerFamily::undecided_backends() const {
  std::lock_guard lock(mutex_);
  std::set<int> out;
  for (int pid : live_backends_) {
    if (!backend_labels_.count(pid)) out.insert(pid);
  }
  return out;
}

std::vector<ProbeStatus> PgServerFamily::attach_status() const {
  std::lock_guard lock(mutex_);
  std::map<WorkerLabels, std::pair<std::size_t, std::size_t>> backends;  // labels -> (attached, decided)
  for (const auto& [pid, labels] : backend_labels_) {
    if (labels == kOtherWorker) continue;
    auto& [attached, decided] = backends[labels];
    ++decided;
    if (kernel_ && kernel_->attached(pid)) ++attached;
  }
  std::vector<ProbeStatus> out;
  for (const auto& [pid, labels] : worker_labels_) {
    auto it = backends.find(labels);
    if (it == backends.end()) continue;  // no connection to a cluster on this host (yet)
    ProbeStatus st;
    st.labels = labels;
    st.host_pid = pid;
    st.probe = "postgres";
    st.method = "usdt";
    const auto [attached, decided] = it->second;
    st.attached = attached == decided;
    if (!st.attached) st.error = fmt::format("{} of the {} backends serving it attached", attached, decided);
    out.push_back(st);
  }
  return out;
}

void PgServerFamily::collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const {
  auto snap = snapshot();
  snap.missed_statements = hub.missed_statements;
  append(out, exporter::db_server_metrics(snap));
}

}  // namespace sp::agent
