// The GC probe family: follows discovery (attach to new workers, detach from exited ones), chooses the method per
// process (core/python/gc_locator.h), folds the kernel's per-process histograms into per-worker totals that survive
// restarts, and hands each pause on as a GcPause. Thread-safe: the scanning thread calls update()/poll(), the
// exporter's threads snapshot()/collect().
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/families/gc_kernel.h"
#include "agent/families/kernel_family.h"
#include "core/model/gc_stats.h"
#include "core/python/gc_planner.h"

namespace sp::agent {

class GcFamily : public KernelFamily<GcKernel> {
 public:
  // `force` pins one method for every process (tests, --gc-method); nullopt chooses per process.
  GcFamily(std::string proc_root, GcKernelOpener open, std::optional<GcMethod> force = std::nullopt);
  ~GcFamily() override;

  const char* name() const override { return "gc"; }
  // Attach to workers that appeared, detach from the ones that left (their last pauses are drained and their last
  // counts kept first).
  void update(const ScanResult& current, const ScanDiff& diff) override;
  void drain() override;
  void poll() override;
  void forget_worker(const WorkerLabels& w) override;
  std::vector<ProbeStatus> attach_status() const override;
  void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override;

  GcSnapshot snapshot() const;

 private:
  void attach(const WorkerInfo& w);
  void refresh_counts();  // caller holds mutex_
  std::string proc_root_;
  GcPlanner planner_;  // used by the scan thread only

  mutable std::mutex mutex_;
  std::map<int, ProbeStatus> status_;  // by host PID, live workers only
  ProcessBook<int, GcSeries> book_;    // key: generation
  std::uint64_t events_received_ = 0;
};

}  // namespace sp::agent
