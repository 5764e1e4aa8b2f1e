#include "agent/families/pgserver_family.h"

#include <fmt/core.h>
#include <sys/stat.h>

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

void PgServerFamily::attribute(std::vector<pgs_query_event> events) {
  // A connection opened since the last rescan: try to map its backend now, so that its queries need not wait. Once
  // per backend until the rescan decides it: a socket dump walks the kernel's whole connection table, and a busy
  // backend serving nobody we profile (a pgbench, another application) would otherwise cost one per poll.
  std::set<int> unknown;
  for (const auto& e : events) {
    const int pid = static_cast<int>(e.tgid);
    if (!backend_labels_.count(pid) && looked_up_.insert(pid).second) unknown.insert(pid);
  }
  if (!unknown.empty()) map_backends(std::vector<int>(unknown.begin(), unknown.end()), false);
  constexpr std::size_t kMaxPending = 1 << 16;
  for (auto& e : events) {
    if (backend_labels_.count(static_cast<int>(e.tgid)) || pending_.size() + pending_old_.size() >= kMaxPending) {
      if (!backend_labels_.count(static_cast<int>(e.tgid))) ++pending_overflow_;
      account(e);
    } else {
      pending_.push_back(e);
    }
  }
}

void PgServerFamily::update(const ScanResult& current, const ScanDiff&) {
  if (!kernel_) return;

  // Attach to each postgres binary in use, once, whatever the number of clusters running it.
  std::map<std::string, std::set<int>> binaries;
  std::map<std::string, std::string> paths;
  for (const auto& p : current.postgres) {
    if (!p.postmaster) continue;
    struct stat st {};
    std::string exe = fmt::format("{}/{}/exe", proc_root_, p.key.pid);
    if (stat(exe.c_str(), &st) != 0) continue;  // exited meanwhile
    std::string key = fmt::format("{}:{}", st.st_dev, st.st_ino);
    binaries[key].insert(p.key.pid);
    paths[key] = fmt::format("{}/{}/root{}", proc_root_, p.key.pid, p.exe_path);
  }
  std::lock_guard lock(mutex_);
  for (const auto& [key, postmasters] : binaries) {
    if (kernel_->attached(key)) continue;
    std::string error;
    if (kernel_->attach(key, paths[key], error)) {
      log::info("postgres: attached to {} (postmaster pid {})", paths[key], *postmasters.begin());
    } else {
      log::warn("postgres: cannot attach: {}", error);
      attach_errors_.push_back(error);
    }
  }
  // A binary no postmaster runs any more is let go only after a while: a restart (pg_ctl restart, a crash and
  // restart by systemd) leaves no postmaster for a moment, and its new backends would run unprobed until the next
  // rescan attached again. An upgraded binary (a new inode) is released kUnusedBinaryGrace after its last user.
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [key, postmasters] : binaries_) {
    if (!binaries.count(key)) unused_since_.try_emplace(key, now);
  }
  for (auto it = unused_since_.begin(); it != unused_since_.end();) {
    if (binaries.count(it->first)) {
      it = unused_since_.erase(it);
    } else if (now - it->second >= kUnusedBinaryGrace) {
      kernel_->detach(it->first);
      it = unused_since_.erase(it);
    } else {
      ++it;
    }
  }
  binaries_ = std::move(binaries);

  worker_labels_.clear();
  for (const auto& w : current.workers) worker_labels_[w.key.pid] = sp::labels_of(w);

  std::set<int> live;
  for (const auto& p : current.postgres) {
    if (!p.postmaster) live.insert(p.key.pid);
  }
  // Backends decided before this scan read /proc (by a rescan, or at a poll since for a connection opened between two
  // scans): one this scan does not list has exited. One decided below, by this rescan's own drain, may have been
  // forked after the scan read /proc and waits for the next rescan.
  std::set<int> decided_before;
  for (const auto& [pid, labels] : backend_labels_) decided_before.insert(pid);
  // Records drained after the worker list is fresh, so that new connections of new workers find them. Lock waits
  // too: those of a backend that has exited since the last poll must reach the sink before it is let go below.
  std::vector<pgs_query_event> drained;
  kernel_->drain([&](const pgs_query_event& e) { drained.push_back(e); });
  std::vector<pgs_lock_event> locks;
  kernel_->drain_locks([&](const pgs_lock_event& e) { locks.push_back(e); });
  attribute(std::move(drained));
  // Every backend this scan lists is decided now: its client existed before it, so it is in this scan too.
  map_backends(std::vector<int>(live.begin(), live.end()), true);
  looked_up_.clear();
  // Held records: those whose backend is decided now are counted; those held since the previous rescan too belong
  // to connections that ended unseen by any scan, and count as "other"; the rest wait one more rescan (their
  // backend may have been forked after this scan read /proc).
  std::vector<pgs_query_event> still_waiting;
  std::set<int> unseen;  // backends whose held records are counted as "other" without a decision
  for (auto* held : {&pending_old_, &pending_}) {
    bool old_round = held == &pending_old_;
    for (const auto& e : *held) {
      const bool decided = backend_labels_.count(static_cast<int>(e.tgid)) != 0;
      if (decided || old_round) {
        if (!decided) unseen.insert(static_cast<int>(e.tgid));
        account(e);
      } else {
        still_waiting.push_back(e);
      }
    }
    held->clear();
  }
  for (int pid : unseen) log::debug("postgres: backend {} ended unseen by any rescan; its statements are other", pid);
  pending_old_ = std::move(still_waiting);
  hand_on_lock_waits(locks);
  // Backends that have exited: their kernel entries still hold what they did since the last poll (often their last
  // transaction), so they are read once more before their counts are retired and the entries freed.
  std::vector<int> gone;
  for (int pid : decided_before) {
    if (!live.count(pid)) gone.push_back(pid);
  }
  if (!gone.empty()) read_totals();
  for (int pid : gone) {
    backends_.retire(pid);
    kernel_->erase_backend(pid);
    backend_labels_.erase(pid);
  }
  live_backends_ = std::move(live);
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
  snap.clusters_attached = kernel_ ? kernel_->attached_count() : 0;
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

void PgServerFamily::collect(const HubSnapshot&, std::vector<prometheus::MetricFamily>& out) const {
  append(out, exporter::db_server_metrics(snapshot()));
}

}  // namespace sp::agent
