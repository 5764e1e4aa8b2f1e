#include "probes/gc_family.h"

#include <fmt/core.h>

#include "core/util/log.h"

namespace sp::bpf {
namespace {

std::string who(const WorkerInfo& w) { return fmt::format("worker {} (pid {})", w.worker_name, w.host_pid); }

gc_target target_of(const GcProbePlan& plan) {
  gc_target t{};
  t.gen_source = static_cast<__u32>(plan.generation);
  t.ret_source = static_cast<__u32>(plan.collected);
  t.long_layout = plan.long_layout ? static_cast<__u32>(plan.long_layout->kind) : static_cast<__u32>(SP_PYLONG_SIZE_SIGNED);
  // Without a known PyLong layout nothing that needs one may be read.
  if (!plan.long_layout) {
    if (t.gen_source == SP_GC_GEN_FASTCALL) t.gen_source = SP_GC_GEN_NONE;
    if (t.ret_source == SP_GC_RET_PYLONG) t.ret_source = SP_GC_RET_NONE;
  }
  return t;
}

}  // namespace

GcFamily::GcFamily(std::string proc_root, std::optional<GcMethod> force)
    : proc_root_(proc_root), planner_(std::move(proc_root), force) {}

GcFamily::~GcFamily() = default;

bool GcFamily::start(std::string& error) {
  probe_ = GcProbe::create(error);
  return probe_ != nullptr;
}

void GcFamily::attach(const WorkerInfo& w) {
  ProbeStatus st;
  st.labels = labels_of(w);
  st.host_pid = w.host_pid;
  st.probe = "gc";
  std::string error;
  std::optional<GcProbePlan> plan = planner_.plan(w, error);
  if (plan) {
    st.method = std::string(gc_method_name(plan->method));
    GcAttachSpec spec;
    spec.host_pid = w.host_pid;
    spec.binary_path = planner_.attach_path(w);
    spec.method = plan->method == GcMethod::Usdt ? GcAttachMethod::Usdt : GcAttachMethod::Uprobe;
    spec.func_offset = plan->func_offset;
    spec.target = target_of(*plan);
    spec.description = who(w);
    st.attached = probe_->attach(spec, error);
    if (st.attached) {
      log::info("gc: attached to {} by {} ({})", who(w), st.method, plan->detail);
    }
  } else {
    st.method = "none";
  }
  if (!st.attached) {
    st.error = error;
    // A process that exited meanwhile is not a failure: the agent says so once for all families.
    if (process_running(proc_root_, w.key)) {
      log::warn("gc: cannot attach to {}: {}", who(w), error);
    } else {
      log::debug("gc: cannot attach to {}, which has exited: {}", who(w), error);
    }
  }
  std::lock_guard lock(mutex_);
  status_[w.host_pid] = st;
}

void GcFamily::update(const ScanDiff& diff) {
  if (!probe_) return;
  for (const auto& w : diff.removed) {
    probe_->detach(w.host_pid);
    std::lock_guard lock(mutex_);
    refresh_counts();  // the last counts of the exited process, before they are erased
    book_.retire(w.host_pid);
    probe_->erase_hist(w.host_pid);
    status_.erase(w.host_pid);
  }
  for (const auto& w : diff.added) attach(w);
}

void GcFamily::refresh_counts() {
  for (const auto& e : probe_->read_hist()) {
    auto it = status_.find(static_cast<int>(e.key.tgid));
    if (it == status_.end()) continue;  // not ours (any more)
    GcSeries s;
    s.pauses = LatencyHistogram::from_kernel(e.value.buckets, e.value.count, e.value.sum_ns);
    s.collected = e.value.collected;
    s.collected_unknown = e.value.collected_unknown;
    book_.set_live(it->first, it->second.labels, e.key.generation, s);
  }
}

void GcFamily::drain() {
  if (!probe_) return;
  std::uint64_t n = static_cast<std::uint64_t>(probe_->drain([this](const gc_event& e) {
    if (on_event_) on_event_(e);
  }));
  std::lock_guard lock(mutex_);
  events_received_ += n;
}

void GcFamily::poll() {
  if (!probe_) return;
  drain();
  std::lock_guard lock(mutex_);
  refresh_counts();
}

void GcFamily::forget_worker(const WorkerLabels& w) {
  std::lock_guard lock(mutex_);
  book_.forget(w);
}

GcSnapshot GcFamily::snapshot() const {
  GcSnapshot snap;
  std::lock_guard lock(mutex_);
  snap.series = book_.totals();
  for (const auto& [pid, st] : status_) snap.status.push_back(st);
  snap.events_lost = probe_ ? probe_->events_lost() : 0;
  snap.events_received = events_received_;
  return snap;
}

}  // namespace sp::bpf
