#include "agent/families/libpq_family.h"

#include <fmt/core.h>

#include <string_view>

#include "agent/families/family_util.h"
#include "core/util/log.h"
#include "exporter/probe_metrics.h"
#include "core/util/safe_file.h"
#include "core/postgres/sql_fingerprint.h"

namespace sp::agent {
namespace {

const char* walk_result(std::uint32_t status) {
  switch (status) {
    case SP_PY_DESC_OFF: return "off";
    case SP_PY_DESC_FOUND: return "found";
    case SP_PY_DESC_NO_FRAME: return "no_frame";
    case SP_PY_DESC_NO_TSTATE: return "no_thread_state";
    case SP_PY_DESC_BAD_VALUE: return "bad_value";
  }
  return "invalid";
}

pq_py_proc to_kernel(const DescProcessPlan& p) {
  pq_py_proc k{};
  const PyFrameOffsets& o = p.offsets;
  k.runtime = p.runtime;
  k.str_type = p.str_type;
  k.code_type = p.code_type;
  k.tls_offset = p.tls_offset.value_or(0);
  k.tss_key = o.tss_key;
  k.interp_head = o.interp_head;
  k.threads_head = o.threads_head;
  k.ts_next = o.ts_next;
  k.ts_thread_id = o.ts_thread_id;
  k.ts_frame = o.ts_frame;
  k.cframe_current = o.cframe_current.value_or(SP_PY_NO_CFRAME);
  k.f_code = o.f_code;
  k.f_back = o.f_back;
  k.f_locals = o.f_locals;
  k.co_name = o.co_name;
  k.co_varnames = o.co_varnames;
  k.ob_type = o.ob_type;
  k.tuple_size = o.tuple_size;
  k.tuple_items = o.tuple_items;
  k.str_length = o.str_length;
  k.str_state = o.str_state;
  k.str_data = o.str_data;
  k.state_compact = o.state_compact;
  k.state_ascii = o.state_ascii;
  return k;
}

}  // namespace

LibpqFamily::LibpqFamily(std::string proc_root, LibpqKernelOpener open, LibpqOptions options)
    : KernelFamily(std::move(open)), proc_root_(std::move(proc_root)), options_(options), desc_planner_(proc_root_) {}

LibpqFamily::~LibpqFamily() = default;

// psycopg2 (what Synapse uses) only calls the synchronous API, through which every query already passes; the
// asynchronous probes would add four traps to each of its queries for nothing. Other libpq users (psycopg 3 is built
// on the asynchronous API) get them.
bool LibpqFamily::wants_async(const WorkerInfo& w) const {
  if (options_.async_mode != LibpqAsyncMode::Auto) return options_.async_mode == LibpqAsyncMode::On;
  ReadResult maps = read_file(fmt::format("{}/{}/maps", proc_root_, w.host_pid), 16u << 20);
  return maps.error != 0 || maps.data.find("/psycopg2/") == std::string::npos;
}

void LibpqFamily::attach(const WorkerInfo& w) {
  ProbeStatus st;
  st.labels = labels_of(w);
  st.host_pid = w.host_pid;
  st.probe = "libpq";
  LibpqAttachSpec spec;
  spec.host_pid = w.host_pid;
  spec.libpq_path = fmt::format("{}/{}/root{}", proc_root_, w.host_pid, w.libpq_path);
  spec.async = wants_async(w);
  spec.description = who(w);
  st.method = spec.async ? "uprobe_sync_async" : "uprobe_sync";
  std::string error;
  st.attached = kernel_->attach(spec, error);
  if (st.attached) {
    log::info("libpq: attached to {} ({}, {})", who(w), w.libpq_path, st.method);
  } else {
    st.error = error;
    log_attach_failure("libpq", proc_root_, w, "attach to", error);
  }
  std::optional<DescAttributionStatus> desc;
  if (st.attached) desc = attach_python(w);
  std::lock_guard lock(mutex_);
  status_[w.host_pid] = st;
  if (desc) desc_status_[w.host_pid] = *desc;
}

DescAttributionStatus LibpqFamily::attach_python(const WorkerInfo& w) {
  DescAttributionStatus d;
  d.labels = labels_of(w);
  d.host_pid = w.host_pid;
  std::string why_not;
  auto plan = desc_planner_.plan(w, why_not);
  if (plan && kernel_->set_python(w.host_pid, to_kernel(*plan), why_not)) {
    d.active = true;
    d.detail = plan->detail;
    log::info("libpq: queries of {} are attributed to Synapse transactions ({})", who(w), d.detail);
  } else {
    d.detail = why_not;
    if (!process_running(proc_root_, w.key)) {
      log::debug("libpq: no desc attribution for {}, which has exited: {}", who(w), why_not);
      return d;
    }
    log::warn("libpq: no per-transaction (desc) attribution for {}: {}; its queries count as unattributed", who(w),
              why_not);
  }
  return d;
}

void LibpqFamily::update(const ScanResult& current, const ScanDiff& diff) {
  if (!kernel_) return;
  poll();  // events of workers about to be removed still find their labels
  for (const auto& w : diff.removed) {
    kernel_->detach(w.host_pid);
    std::lock_guard lock(mutex_);
    lost_.retire(w.host_pid);
    kernel_->erase_lost(w.host_pid);
    status_.erase(w.host_pid);
    desc_status_.erase(w.host_pid);
    counted_.erase(w.host_pid);
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
    q.fingerprint = std::move(fp.text);
    q.verb = std::move(fp.verb);
    q.table = std::move(fp.table);
  }
  const WorkerLabels& labels = it->second.labels;
  Counted& c = counted_[it->first];
  auto verb = c.series.find(q.verb);
  if (verb == c.series.end()) verb = c.series.emplace(q.verb, decltype(verb->second){}).first;
  auto table = verb->second.find(q.table);
  if (table == verb->second.end()) table = verb->second.emplace(q.table, &series_[{labels, {q.verb, q.table}}]).first;
  table->second->record(e.end_ns - e.start_ns);
  if (e.desc_status == SP_PY_DESC_FOUND) {
    q.desc = sanitize_desc(std::string_view(e.desc, std::min<std::uint32_t>(e.desc_len, SP_PY_DESC_MAX - 1)));
  }
  auto desc = c.desc.find(q.desc);
  if (desc == c.desc.end()) desc = c.desc.emplace(q.desc, &desc_[{labels, q.desc}]).first;
  desc->second->count += 1;
  desc->second->sum_ns += e.end_ns - e.start_ns;
  auto walk = c.walks.find(e.desc_status);
  if (walk == c.walks.end()) {
    walk = c.walks.emplace(e.desc_status, &desc_walks_[{labels, walk_result(e.desc_status)}]).first;
  }
  *walk->second += 1;
  sink().query(q);
}

void LibpqFamily::drain() {
  if (!kernel_) return;
  std::lock_guard lock(mutex_);
  kernel_->drain([this](const pq_event& e) { consume(e); });
}

void LibpqFamily::poll() {
  if (!kernel_) return;
  drain();
  std::lock_guard lock(mutex_);
  for (const auto& [tgid, lost] : kernel_->read_lost()) {
    auto it = status_.find(static_cast<int>(tgid));
    if (it == status_.end()) continue;
    lost_.set_live(it->first, it->second.labels, 0, LatencyHistogram::from_kernel(lost.buckets, lost.count, lost.sum_ns));
  }
}

void LibpqFamily::forget_worker(const WorkerLabels& w) {
  std::lock_guard lock(mutex_);
  erase_worker(series_, w);
  erase_worker(desc_, w);
  erase_worker(desc_walks_, w);
  counted_.clear();  // some pointed into what was just erased
  lost_.forget(w);
}

DbClientSnapshot LibpqFamily::snapshot() const {
  DbClientSnapshot snap;
  std::lock_guard lock(mutex_);
  snap.series = series_;
  for (const auto& [key, h] : lost_.totals()) snap.series[{key.first, {"unknown", "unknown"}}].add(h);
  snap.desc = desc_;
  for (const auto& [key, h] : lost_.totals()) snap.desc[{key.first, "unknown"}].add({h.count, h.sum_ns});
  snap.desc_walks = desc_walks_;
  for (const auto& [pid, d] : desc_status_) snap.desc_status.push_back(d);
  for (const auto& [pid, st] : status_) snap.status.push_back(st);
  snap.events_lost = kernel_ ? kernel_->events_lost() : 0;
  return snap;
}

std::vector<ProbeStatus> LibpqFamily::attach_status() const {
  std::lock_guard lock(mutex_);
  std::vector<ProbeStatus> out;
  for (const auto& [pid, st] : status_) out.push_back(st);
  for (const auto& [pid, d] : desc_status_) {
    ProbeStatus st;
    st.labels = d.labels;
    st.host_pid = d.host_pid;
    st.probe = "libpq_desc";
    st.method = "python_frames";
    st.attached = d.active;
    st.error = d.detail;
    out.push_back(st);
  }
  return out;
}

void LibpqFamily::collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const {
  const DbClientSnapshot db = snapshot();
  append(out, exporter::db_client_metrics(db, options_.table_labels));
  append(out, exporter::db_desc_metrics(db, options_.desc_labels, hub.desc_ratio, hub.desc_server));
}

}  // namespace sp::agent
