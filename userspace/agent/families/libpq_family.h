// The libpq client-side probe family: attaches to every worker that has libpq mapped (a worker
// maps it on its first connection, so each rescan looks again), fingerprints every query's SQL the moment it arrives
// (the text is dropped right there: literals never leave this class), aggregates per (worker, verb, table), and
// keeps per-worker totals exact when the ring buffer overflows (lost records are exported as verb "unknown").
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/families/libpq_kernel.h"
#include "agent/families/kernel_family.h"
#include "core/model/db_stats.h"
#include "core/proc/discovery.h"
#include "core/python/desc_planner.h"

namespace sp::agent {

enum class LibpqAsyncMode { Auto, On, Off };

struct LibpqOptions {
  LibpqAsyncMode async_mode = LibpqAsyncMode::Auto;
  std::size_t table_labels = 20;  // --db-table-labels: tables that keep their name in the series
  std::size_t desc_labels = 50;   // descs that keep their name
};

class LibpqFamily : public KernelFamily<LibpqKernel> {
 public:
  LibpqFamily(std::string proc_root, LibpqKernelOpener open, LibpqOptions options = {});
  ~LibpqFamily() override;

  const char* name() const override { return "libpq"; }
  // Attach to current workers that have libpq mapped and are not attached yet; detach from removed ones (after a
  // last drain, so that their records still find their labels).
  void update(const ScanResult& current, const ScanDiff& diff) override;
  // The records only (when the ring fills up between two polls).
  void drain() override;
  // The records, then the lost-record counts.
  void poll() override;
  void forget_worker(const WorkerLabels& w) override;
  // probe "libpq" per worker tried, and probe "libpq_desc" (method python_frames) per attached worker.
  std::vector<ProbeStatus> attach_status() const override;
  void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override;

  DbClientSnapshot snapshot() const;

 private:
  void attach(const WorkerInfo& w);
  DescAttributionStatus attach_python(const WorkerInfo& w);
  bool wants_async(const WorkerInfo& w) const;
  void consume(const pq_event& e);  // caller holds mutex_

  std::string proc_root_;
  LibpqOptions options_;

  mutable std::mutex mutex_;
  DescPlanner desc_planner_;  // scanning thread only
  std::map<int, ProbeStatus> status_;  // by host PID, live workers whose libpq we tried
  std::map<int, DescAttributionStatus> desc_status_;  // by host PID, attached workers
  std::map<std::pair<WorkerLabels, std::string>, DescTotals> desc_;
  std::map<std::pair<WorkerLabels, std::string>, std::uint64_t> desc_walks_;
  std::map<std::pair<WorkerLabels, QueryKey>, LatencyHistogram> series_;
  // Per host PID, where its records are counted in series_, desc_ and desc_walks_: looked up by verb, table and desc
  // without building a (WorkerLabels, ...) key for every record. Map entries stay put until erased; a process's
  // cache goes with it, and all of them when forget_worker() erases entries.
  struct Counted {
    std::map<std::string, std::map<std::string, LatencyHistogram*, std::less<>>, std::less<>> series;  // verb, table
    std::map<std::string, DescTotals*, std::less<>> desc;
    std::map<std::uint32_t, std::uint64_t*> walks;  // by desc_status
  };
  std::map<int, Counted> counted_;
  ProcessBook<int, LatencyHistogram> lost_;  // key unused (0): per-process kernel counts of lost records
};

}  // namespace sp::agent
