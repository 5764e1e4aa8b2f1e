#include "agent/families/reactor_family.h"

#include <fmt/core.h>

#include "agent/families/family_util.h"
#include "core/util/log.h"
#include "exporter/probe_metrics.h"

namespace sp::agent {
namespace {

ReactorSeries series_of(const reactor_proc& p) {
  ReactorSeries s;
  s.ticks = TickHistogram::from_kernel(p.buckets, p.ticks, p.tick_sum_ns);
  s.waits = p.waits;
  s.wait_sum_ns = p.wait_sum_ns;
  return s;
}

}  // namespace

ReactorFamily::ReactorFamily(std::string proc_root, ReactorKernelOpener open, Clock clock)
    : KernelFamily(std::move(open)), proc_root_(std::move(proc_root)), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

ReactorFamily::~ReactorFamily() = default;

bool ReactorFamily::start(std::string& why_not) {
  if (!KernelFamily::start(why_not)) return false;
  if (kernel_->method() == "raw_syscalls") {
    log::info(
        "reactor: epoll calls seen through raw_syscalls:sys_enter/sys_exit (the per-syscall tracepoints need "
        "tracefs at /sys/kernel/tracing): its programs run for every syscall on the host and leave at once");
  } else {
    log::info("reactor: epoll calls seen through their syscall tracepoints ({})", kernel_->method());
  }
  return true;
}

void ReactorFamily::add(const WorkerInfo& w) {
  Tracked t;
  t.status.labels = labels_of(w);
  t.status.host_pid = w.host_pid;
  t.status.probe = "reactor";
  t.status.method = kernel_->method();
  t.since = clock_();
  std::string error;
  t.status.attached = kernel_->add(w.host_pid, error);
  if (t.status.attached) {
    log::info("reactor: counting the ticks of {} ({})", who(w), t.status.method);
  } else {
    t.status.error = error;
    log_attach_failure("reactor", proc_root_, w, "count reactor ticks of", error);
  }
  std::lock_guard lock(mutex_);
  tracked_[w.host_pid] = std::move(t);
}

void ReactorFamily::update(const ScanResult&, const ScanDiff& diff) {
  if (!kernel_) return;
  for (const auto& w : diff.removed) {
    std::lock_guard lock(mutex_);
    refresh_counts();  // the last counts of the exited process, before the kernel drops them
    book_.retire(w.host_pid);
    tracked_.erase(w.host_pid);
    kernel_->remove(w.host_pid);
  }
  for (const auto& w : diff.added) add(w);
}

void ReactorFamily::refresh_counts() {
  const auto now = clock_();
  for (const auto& [pid, counts] : kernel_->read()) {
    auto it = tracked_.find(pid);
    if (it == tracked_.end()) continue;  // not ours (any more)
    Tracked& t = it->second;
    book_.set_live(pid, t.status.labels, 0, series_of(counts));
    // enter_ns/return_ns: an epoll call was seen even if no wait or tick is complete yet (one long wait).
    if (counts.waits || counts.ticks || counts.enter_ns || counts.return_ns) {
      if (!t.epoll_seen && !t.status.error.empty()) log::info("reactor: {} waits in epoll now", t.status.labels.worker);
      t.epoll_seen = true;
      t.status.error.clear();
    } else if (t.status.attached && t.status.error.empty() && now - t.since >= kNoEpollAfter) {
      t.status.error = fmt::format("no epoll call on the main thread in {} s: not an epoll reactor, no ticks counted",
                                   kNoEpollAfter.count());
      log::info("reactor: worker {} (pid {}): {}", t.status.labels.worker, pid, t.status.error);
    }
  }
}

void ReactorFamily::poll() {
  if (!kernel_) return;
  std::lock_guard lock(mutex_);
  refresh_counts();
}

void ReactorFamily::forget_worker(const WorkerLabels& w) {
  std::lock_guard lock(mutex_);
  book_.forget(w);
}

std::vector<ProbeStatus> ReactorFamily::attach_status() const {
  std::lock_guard lock(mutex_);
  std::vector<ProbeStatus> out;
  for (const auto& [pid, t] : tracked_) out.push_back(t.status);
  return out;
}

ReactorSnapshot ReactorFamily::snapshot() const {
  ReactorSnapshot snap;
  snap.status = attach_status();
  std::lock_guard lock(mutex_);
  for (const auto& [key, s] : book_.totals()) snap.series[key.first].add(s);
  return snap;
}

void ReactorFamily::collect(const HubSnapshot&, std::vector<prometheus::MetricFamily>& out) const {
  append(out, exporter::reactor_metrics(snapshot()));
}

}  // namespace sp::agent
