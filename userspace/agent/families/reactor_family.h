// The reactor family: follows discovery (start counting a worker's reactor ticks when it appears, stop when it goes),
// folds the kernel's per-process counts into per-worker totals that survive restarts, and says per worker whether
// ticks are found at all (a worker whose main thread never waits in epoll is not running an epoll reactor). Thread
// states: the kernel keeps one entry per thread (bpf/reactor.h reactor_thread); the family adds each thread's state in
// progress, keeps each thread's values from going backwards between reads, and when a thread exits folds its final
// values into its process's totals and has the kernel drop the entry (so nothing of an exited thread is lost).
// Thread-safe: the scanning thread calls update()/poll(), the exporter's threads snapshot()/collect().
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/families/kernel_family.h"
#include "agent/families/reactor_kernel.h"
#include "core/model/reactor_stats.h"

namespace sp::agent {

class ReactorFamily : public KernelFamily<ReactorKernel> {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // How long a worker may go without a single epoll call on its main thread before its attach status says so.
  static constexpr std::chrono::seconds kNoEpollAfter{30};

  // `clock`: the time (tests pass their own); default steady_clock.
  ReactorFamily(std::string proc_root, ReactorKernelOpener open, Clock clock = {});
  ~ReactorFamily() override;

  const char* name() const override { return "reactor"; }
  // Loads the kernel side and says which hooks it took.
  bool start(std::string& why_not) override;
  // Counts workers that appeared, stops counting the ones that left (their last counts kept first).
  void update(const ScanResult& current, const ScanDiff& diff) override;
  void poll() override;
  void forget_worker(const WorkerLabels& w) override;
  std::vector<ProbeStatus> attach_status() const override;
  void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override;

  ReactorSnapshot snapshot() const;

 private:
  struct Tracked {
    ProbeStatus status;
    std::chrono::steady_clock::time_point since;  // when counting began
    bool epoll_seen = false;
    ThreadStates exited;  // the final values of the process's threads that exited
  };
  // A thread's values as last read (state in progress included): the next read never reports less.
  struct ThreadView {
    int pid = 0;
    ThreadRole role = ThreadRole::kOther;
    StateNs ns{};
    StateNs tick_ns{};
  };
  void add(const WorkerInfo& w);
  void refresh_counts();  // caller holds mutex_
  // Per process (agent PID): its threads' states, exited ones included; caller holds mutex_.
  std::map<int, ThreadStates> refresh_threads();

  std::string proc_root_;
  Clock clock_;

  mutable std::mutex mutex_;
  std::map<int, Tracked> tracked_;               // by host PID, live workers only
  std::map<std::uint32_t, ThreadView> threads_;  // by host TID, live threads of tracked processes
  ProcessBook<int, ReactorSeries> book_;         // one key (0): a worker has one reactor
};

}  // namespace sp::agent
