#include "bpf/libpq_family.h"

#include <fmt/core.h>

#include <string_view>

#include "core/log.h"
#include "core/safe_file.h"
#include "core/sql_fingerprint.h"

namespace sp::bpf {
namespace {

std::string who(const WorkerInfo& w) { return fmt::format("worker {} (pid {})", w.worker_name, w.host_pid); }

}  // namespace

LibpqFamily::LibpqFamily(std::string proc_root, LibpqAsyncMode async_mode)
    : proc_root_(std::move(proc_root)), async_mode_(async_mode) {}

LibpqFamily::~LibpqFamily() = default;

bool LibpqFamily::start(std::string& error) {
  probe_ = LibpqProbe::create(error);
  return probe_ != nullptr;
}

// psycopg2 (what Synapse uses) only calls the synchronous API, through which every query already passes; the
// asynchronous probes would add four traps to each of its queries for nothing. Other libpq users (psycopg 3 is built
// on the asynchronous API) get them.
bool LibpqFamily::wants_async(const WorkerInfo& w) const {
  if (async_mode_ != LibpqAsyncMode::Auto) return async_mode_ == LibpqAsyncMode::On;
  ReadResult maps = read_file(fmt::format("{}/{}/maps", proc_root_, w.host_pid), 16u << 20);
  return maps.error != 0 || maps.data.find("/psycopg2/") == std::string::npos;
}

void LibpqFamily::attach(const WorkerInfo& w) {
  ProbeStatus st;
  st.labels = {w.worker_name, w.worker_app};
  st.host_pid = w.host_pid;
  st.probe = "libpq";
  LibpqAttachSpec spec;
  spec.host_pid = w.host_pid;
  spec.libpq_path = fmt::format("{}/{}/root{}", proc_root_, w.host_pid, w.libpq_path);
  spec.async = wants_async(w);
  spec.description = who(w);
  st.method = spec.async ? "uprobe_sync_async" : "uprobe_sync";
  std::string error;
  st.attached = probe_->attach(spec, error);
  if (st.attached) {
    log::info("libpq: attached to {} ({}, {})", who(w), w.libpq_path, st.method);
  } else {
    st.error = error;
    log::warn("libpq: cannot attach to {}: {}", who(w), error);
  }
  std::lock_guard lock(mutex_);
  status_[w.host_pid] = st;
}

void LibpqFamily::update(const ScanResult& current, const ScanDiff& diff) {
  if (!probe_) return;
  poll();  // events of workers about to be removed still find their labels
  for (const auto& w : diff.removed) {
    probe_->detach(w.host_pid);
    std::lock_guard lock(mutex_);
    lost_.retire(w.host_pid);
    probe_->erase_lost(w.host_pid);
    status_.erase(w.host_pid);
  }
  for (const auto& w : current.workers) {
    if (w.libpq_path.empty()) continue;  // not connected to PostgreSQL yet: look again next rescan
    bool known;
    {
      std::lock_guard lock(mutex_);
      known = status_.count(w.host_pid) != 0;
    }
    if (!known) attach(w);
  }
}

void LibpqFamily::consume(const pq_event& e) {
  auto it = status_.find(static_cast<int>(e.tgid));
  if (it == status_.end()) return;
  std::uint32_t len = std::min<std::uint32_t>(e.text_len, SP_PQ_TEXT_MAX - 1);
  // The kernel copies at most SP_PQ_TEXT_MAX - 1 bytes: a text that long may have been cut.
  bool truncated = len >= SP_PQ_TEXT_MAX - 1;
  QueryEvent q;
  q.worker = it->second.labels;
  q.tgid = e.tgid;
  q.tid = e.tid;
  q.start_ns = e.start_ns;
  q.end_ns = e.end_ns;
  q.conn = e.conn;
  if (e.kind == SP_PQ_EXEC_PREPARED || e.kind == SP_PQ_ASYNC_PREPARED) {
    q.verb = "other";  // the record holds a statement name, not SQL
  } else {
    SqlFingerprint fp = fingerprint_sql(std::string_view(e.text, len), truncated);
    q.fingerprint_id = fp.id;
    q.fingerprint = fp.text;
    q.verb = std::move(fp.verb);
    q.table = std::move(fp.table);
  }
  series_[{it->second.labels, {q.verb, q.table}}].record(e.end_ns - e.start_ns);
  if (on_event_) on_event_(q);
}

void LibpqFamily::poll() {
  if (!probe_) return;
  std::lock_guard lock(mutex_);
  probe_->drain([this](const pq_event& e) { consume(e); });
  for (const auto& [tgid, lost] : probe_->read_lost()) {
    auto it = status_.find(static_cast<int>(tgid));
    if (it == status_.end()) continue;
    lost_.set_live(it->first, it->second.labels, 0, LatencyHistogram::from_kernel(lost.buckets, lost.count, lost.sum_ns));
  }
}

DbClientSnapshot LibpqFamily::snapshot() const {
  DbClientSnapshot snap;
  std::lock_guard lock(mutex_);
  snap.series = series_;
  for (const auto& [key, h] : lost_.totals()) snap.series[{key.first, {"unknown", "unknown"}}].add(h);
  for (const auto& [pid, st] : status_) snap.status.push_back(st);
  snap.events_lost = probe_ ? probe_->events_lost() : 0;
  return snap;
}

}  // namespace sp::bpf
