#include "agent/families/gc_family.h"

#include <fmt/core.h>

#include "agent/families/family_util.h"
#include "core/util/log.h"
#include "exporter/probe_metrics.h"

namespace sp::agent {
namespace {

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

GcFamily::GcFamily(std::string proc_root, GcKernelOpener open, std::optional<GcMethod> force)
    : proc_root_(proc_root), open_(std::move(open)), planner_(std::move(proc_root), force) {}

GcFamily::~GcFamily() = default;

bool GcFamily::start(std::string& why_not) {
  kernel_ = open_(why_not);
  return kernel_ != nullptr;
}

std::vector<int> GcFamily::ring_fds() const { return kernel_ ? std::vector<int>{kernel_->ring_fd()} : std::vector<int>{}; }

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
    st.attached = kernel_->attach(spec, error);
    if (st.attached) log::info("gc: attached to {} by {} ({})", who(w), st.method, plan->detail);
  } else {
    st.method = "none";
  }
  if (!st.attached) {
    st.error = error;
    log_attach_failure("gc", proc_root_, w, "attach to", error);
  }
  std::lock_guard lock(mutex_);
  status_[w.host_pid] = st;
}

void GcFamily::update(const ScanResult&, const ScanDiff& diff) {
  if (!kernel_) return;
  for (const auto& w : diff.removed) {
    kernel_->detach(w.host_pid);
    std::lock_guard lock(mutex_);
    refresh_counts();  // the last counts of the exited process, before they are erased
    book_.retire(w.host_pid);
    kernel_->erase_hist(w.host_pid);
    status_.erase(w.host_pid);
  }
  for (const auto& w : diff.added) attach(w);
}

void GcFamily::refresh_counts() {
  for (const auto& e : kernel_->read_hist()) {
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
  if (!kernel_) return;
  std::vector<GcPause> pauses;
  {
    std::lock_guard lock(mutex_);
    events_received_ += static_cast<std::uint64_t>(kernel_->drain([&](const gc_event& e) {
      auto it = status_.find(static_cast<int>(e.tgid));
      if (it == status_.end()) return;  // a process no longer (or not yet) ours
      GcPause p;
      p.worker = it->second.labels;
      p.tgid = e.tgid;
      p.tid = e.tid;
      p.start_ns = e.start_ns;
      p.end_ns = e.end_ns;
      p.generation = e.generation;
      p.collected = e.collected;
      pauses.push_back(std::move(p));
    }));
  }
  for (const auto& p : pauses) sink().gc_pause(p);
}

void GcFamily::poll() {
  if (!kernel_) return;
  drain();
  std::lock_guard lock(mutex_);
  refresh_counts();
}

void GcFamily::forget_worker(const WorkerLabels& w) {
  std::lock_guard lock(mutex_);
  book_.forget(w);
}

FamilyCounts GcFamily::counts() const {
  FamilyCounts c;
  c.events_lost = kernel_ ? kernel_->events_lost() : 0;
  c.hook_misses = kernel_ ? kernel_->hook_misses() : 0;
  return c;
}

std::vector<ProbeStatus> GcFamily::attach_status() const {
  std::lock_guard lock(mutex_);
  std::vector<ProbeStatus> out;
  for (const auto& [pid, st] : status_) out.push_back(st);
  return out;
}

GcSnapshot GcFamily::snapshot() const {
  GcSnapshot snap;
  snap.status = attach_status();
  std::lock_guard lock(mutex_);
  snap.series = book_.totals();
  snap.events_lost = kernel_ ? kernel_->events_lost() : 0;
  snap.events_received = events_received_;
  return snap;
}

void GcFamily::collect(const HubSnapshot&, std::vector<prometheus::MetricFamily>& out) const {
  for (auto& f : exporter::gc_metrics(snapshot())) out.push_back(std::move(f));
}

}  // namespace sp::agent
