#include "agent/families/reactor_family.h"

#include <fmt/core.h>

#include <algorithm>

#include "agent/families/family_util.h"
#include "core/util/log.h"
#include "exporter/probe_metrics.h"

namespace sp::agent {
namespace {

ReactorSeries series_of(const reactor_proc& p, const ThreadStates& states) {
  ReactorSeries s;
  s.states = states;
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
  log::info("reactor: thread states from the scheduler's tracepoints ({})", kernel_->sched_method());
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

std::map<int, ThreadStates> ReactorFamily::refresh_threads() {
  const std::uint64_t now = kernel_->now_ns();
  std::map<int, ThreadStates> out;
  std::map<std::uint32_t, ThreadView> seen;
  for (const auto& [tid, t] : kernel_->read_threads()) {
    const int pid = static_cast<int>(t.tgid);
    auto tracked = tracked_.find(pid);
    if (tracked == tracked_.end()) continue;  // a process being removed
    ThreadView view;
    view.pid = pid;
    view.role = (t.flags & SP_THREAD_MAIN) ? ThreadRole::kReactor : ThreadRole::kOther;
    const bool dead = t.flags & SP_THREAD_DEAD;
    for (std::size_t i = 0; i < SP_STATES; ++i) {
      view.ns[i] = t.ns[i];
      // Completed ticks only, as reactor_tick_seconds counts them: the busy split sums to its _sum.
      view.tick_ns[i] = t.tick_ns[i];
    }
    if (!dead && t.state < SP_STATES && now > t.since_ns) {
      view.ns[t.state] += now - t.since_ns;
    }
    // The kernel may close a state between our clock read and the entry's read, and the state in progress above then
    // counts part of it twice; never report less than the last time.
    if (auto last = threads_.find(tid); last != threads_.end() && last->second.pid == pid) {
      for (std::size_t i = 0; i < SP_STATES; ++i) {
        view.ns[i] = std::max(view.ns[i], last->second.ns[i]);
        view.tick_ns[i] = std::max(view.tick_ns[i], last->second.tick_ns[i]);
      }
    }
    ThreadStates states;
    add_states(states.roles[static_cast<std::size_t>(view.role)], view.ns);
    if (view.role == ThreadRole::kReactor) states.busy = view.tick_ns;
    if (dead) {
      // Its last values move to the process's exited threads, and the kernel's entry goes.
      tracked->second.exited.add(states);
      kernel_->drop_thread(tid);
      continue;
    }
    out[pid].add(states);
    seen[tid] = view;
  }
  threads_ = std::move(seen);
  for (const auto& [pid, t] : tracked_) out[pid].add(t.exited);
  return out;
}

void ReactorFamily::refresh_counts() {
  const auto now = clock_();
  auto states = refresh_threads();
  for (const auto& [pid, counts] : kernel_->read()) {
    auto it = tracked_.find(pid);
    if (it == tracked_.end()) continue;  // not ours (any more)
    Tracked& t = it->second;
    book_.set_live(pid, t.status.labels, 0, series_of(counts, states[pid]));
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
  snap.threads_lost = kernel_ ? kernel_->threads_lost() : 0;
  return snap;
}

void ReactorFamily::collect(const HubSnapshot&, std::vector<prometheus::MetricFamily>& out) const {
  append(out, exporter::reactor_metrics(snapshot()));
}

}  // namespace sp::agent
