// The libpq client-side probe family as the agent runs it: attaches to every worker that has libpq mapped (a worker
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

#include "probes/libpq_probe.h"
#include "core/model/db_stats.h"
#include "core/python/desc_planner.h"
#include "core/proc/discovery.h"

namespace sp::bpf {

enum class LibpqAsyncMode { Auto, On, Off };

class LibpqFamily {
 public:
  LibpqFamily(std::string proc_root, LibpqAsyncMode async_mode = LibpqAsyncMode::Auto);
  ~LibpqFamily();

  bool start(std::string& error);
  bool started() const { return probe_ != nullptr; }
  // The ring buffers the agent waits on (RingWaker); empty before start().
  std::vector<int> ring_fds() const { return probe_ ? std::vector<int>{probe_->ring_fd()} : std::vector<int>{}; }

  // Attach to current workers that have libpq mapped and are not attached yet; detach from removed ones.
  void update(const ScanResult& current, const ScanDiff& diff);
  // Drain the per-call records and refresh the lost-record counts.
  void poll();
  // Only the records (when the ring fills up between two polls).
  void drain();
  DbClientSnapshot snapshot() const;
  // Drops the totals of worker `w`, gone for longer than --forget-after (ProcessBook::forget): memory stays bounded
  // by the workers of the recent past, not by every name the agent has ever seen.
  void forget_worker(const WorkerLabels& w);
  std::uint64_t hook_misses() const { return probe_ ? probe_->hook_misses() : 0; }

  void set_event_sink(std::function<void(const QueryEvent&)> sink) { on_event_ = std::move(sink); }

 private:
  void attach(const WorkerInfo& w);
  DescAttributionStatus attach_python(const WorkerInfo& w);
  bool wants_async(const WorkerInfo& w) const;
  void consume(const pq_event& e);  // caller holds mutex_

  std::string proc_root_;
  LibpqAsyncMode async_mode_;
  std::unique_ptr<LibpqProbe> probe_;
  std::function<void(const QueryEvent&)> on_event_;

  mutable std::mutex mutex_;
  DescPlanner desc_planner_;  // scanning thread only
  std::map<int, ProbeStatus> status_;  // by host PID, live workers whose libpq we tried
  std::map<int, DescAttributionStatus> desc_status_;  // by host PID, attached workers
  std::map<std::pair<WorkerLabels, std::string>, DescTotals> desc_;
  std::map<std::pair<WorkerLabels, std::string>, std::uint64_t> desc_walks_;
  std::map<std::pair<WorkerLabels, QueryKey>, LatencyHistogram> series_;
  ProcessBook<int, LatencyHistogram> lost_;  // key unused (0): per-process kernel counts of lost records
};

}  // namespace sp::bpf
