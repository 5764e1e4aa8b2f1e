// The GC probe family as the agent runs it: follows discovery (attach to new workers, detach from exited ones),
// chooses the method per process (userspace/core/python/gc_locator.h), folds the kernel's per-process histograms into
// per-worker totals that survive restarts, and hands snapshots to the exporter. Thread-safe: the agent's scan thread
// calls update()/poll(), the exporter's threads call snapshot().
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "probes/gc_probe.h"
#include "core/proc/discovery.h"
#include "core/python/gc_planner.h"
#include "core/model/gc_stats.h"

namespace sp::bpf {

class GcFamily {
 public:
  // `force` pins one method for every process (tests, --gc-method); nullopt chooses per process.
  GcFamily(std::string proc_root, std::optional<GcMethod> force = std::nullopt);
  ~GcFamily();

  // Loads the BPF object. False (with `error`) when the kernel refuses: the agent reports it and goes on without GC.
  bool start(std::string& error);
  bool started() const { return probe_ != nullptr; }
  // The ring buffers the agent waits on (RingWaker); empty before start().
  std::vector<int> ring_fds() const { return probe_ ? std::vector<int>{probe_->ring_fd()} : std::vector<int>{}; }

  // Attach to workers that appeared, detach from the ones that left.
  void update(const ScanDiff& diff);
  // Drain per-pause events (each passed to `on_event`, if set) and refresh the per-process counts.
  void poll();
  // Only the first half of poll(): the ring buffer (when it fills up between two polls).
  void drain();
  GcSnapshot snapshot() const;
  // Drops the totals of worker `w`, gone for longer than --forget-after (ProcessBook::forget): memory stays bounded
  // by the workers of the recent past, not by every name the agent has ever seen.
  void forget_worker(const WorkerLabels& w);
  std::uint64_t hook_misses() const { return probe_ ? probe_->hook_misses() : 0; }

  void set_event_sink(std::function<void(const gc_event&)> sink) { on_event_ = std::move(sink); }

 private:
  void attach(const WorkerInfo& w);
  void refresh_counts();  // caller holds mutex_
  std::string proc_root_;
  GcPlanner planner_;  // used by the scan thread only
  std::unique_ptr<GcProbe> probe_;
  std::function<void(const gc_event&)> on_event_;

  mutable std::mutex mutex_;
  std::map<int, ProbeStatus> status_;             // by host PID, live workers only
  ProcessBook<int, GcSeries> book_;               // key: generation
  std::uint64_t events_received_ = 0;
};

}  // namespace sp::bpf
