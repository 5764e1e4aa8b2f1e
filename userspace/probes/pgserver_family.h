// The PostgreSQL server-side family as the agent runs it: attaches to every postgres binary a discovered cluster
// runs, maps each backend to the Synapse worker it serves (its client socket's peer belongs to the worker; see
// core/proc/socket_inventory.h), and attributes queries, lock waits and transaction outcomes to that worker, or to
// worker "other" for backends that serve no discovered Synapse process.
//
// A backend serves one connection for life, so its mapping is decided once. A backend is mapped as soon as one of
// its queries arrives if its worker is already known; otherwise its queries wait (bounded) for the next rescan. A
// rescan that lists the backend also lists its client, which existed before the connection did: if no discovered
// worker owns the other end then, the backend is decided "other".
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "probes/pgserver_probe.h"
#include "core/model/db_stats.h"
#include "core/proc/discovery.h"
#include "core/proc/socket_inventory.h"

namespace sp::bpf {

class PgServerFamily {
 public:
  explicit PgServerFamily(std::string proc_root);
  ~PgServerFamily();

  bool start(std::string& error);
  bool started() const { return probe_ != nullptr; }
  // The ring buffers the agent waits on (RingWaker); empty before start().
  std::vector<int> ring_fds() const {
    return probe_ ? std::vector<int>{probe_->ring_fd(), probe_->lock_ring_fd()} : std::vector<int>{};
  }

  void update(const ScanResult& current);
  // Drain statement and lock-wait records, then refresh the per-backend counts.
  void poll();
  // Only the records (when a ring fills up between two polls).
  void drain();
  DbServerSnapshot snapshot() const;
  // Drops the totals of worker `w`, gone for longer than --forget-after (ProcessBook::forget): memory stays bounded
  // by the workers of the recent past, not by every name the agent has ever seen.
  void forget_worker(const WorkerLabels& w);
  std::uint64_t hook_misses() const { return probe_ ? probe_->hook_misses() : 0; }

  // Backends decided so far (PID as in proc_root -> the worker served, or kOtherWorker), and the backends of the
  // last scan not decided yet (their I/O waits for the decision).
  std::map<int, WorkerLabels> backend_decisions() const;
  std::set<int> undecided_backends() const;

  // Per-query events (server side), for correlation and recording; called with the family's lock held.
  void set_event_sink(std::function<void(const QueryEvent&)> sink) { on_event_ = std::move(sink); }
  // Lock waits of backends whose worker is decided (worker, backend pid, start, end; CLOCK_MONOTONIC), from poll().
  using LockSink = std::function<void(const WorkerLabels&, std::uint32_t, std::uint64_t, std::uint64_t)>;
  void set_lock_sink(LockSink sink) { on_lock_ = std::move(sink); }
  // Whether the events handed to the sink carry the statement's fingerprint (recordings) or only its verb (the
  // agent's series; the default is true). Statements of backends serving nobody we profile never carry one.
  void set_fingerprints(bool on) { fingerprints_ = on; }

 private:
  // Maps the backends in `backend_pids` not decided yet. With `final`, those not mapped are decided "other";
  // otherwise they stay undecided. Caller holds mutex_.
  void map_backends(const std::vector<int>& backend_pids, bool final);
  // Attributes drained records, or holds those of undecided backends; caller holds mutex_.
  void attribute(std::vector<pgs_query_event> events);
  void account(const pgs_query_event& e);
  const WorkerLabels& labels_of(int backend_pid) const;  // caller holds mutex_

  std::string proc_root_;
  std::unique_ptr<PgServerProbe> probe_;
  BackendMapper mapper_;
  std::function<void(const QueryEvent&)> on_event_;
  LockSink on_lock_;
  bool fingerprints_ = true;

  mutable std::mutex mutex_;
  std::map<int, WorkerLabels> worker_labels_;   // worker PID (as in proc_root) -> labels, from the last scan
  std::map<int, WorkerLabels> backend_labels_;  // decided backends -> the worker they serve (or "other")
  std::set<int> live_backends_;                 // backends of the last scan
  std::set<int> looked_up_;                     // undecided backends mapped between rescans already (once each)
  std::map<std::string, std::set<int>> binaries_;  // attached binary key -> postmasters using it
  // Attached binaries no postmaster uses now -> since when; detached after kUnusedBinaryGrace.
  std::map<std::string, std::chrono::steady_clock::time_point> unused_since_;
  static constexpr std::chrono::seconds kUnusedBinaryGrace{60};
  std::vector<std::string> attach_errors_;
  std::map<std::pair<WorkerLabels, std::string>, LatencyHistogram> queries_;
  ProcessBook<int, BackendTotals> backends_;  // by backend PID; key unused (0)
  std::vector<pgs_query_event> pending_;      // records of undecided backends, until the next rescan
  std::vector<pgs_query_event> pending_old_;  // ... held since the rescan before
  std::uint64_t pending_overflow_ = 0;        // records attributed to "other" because pending_ was full
};

}  // namespace sp::bpf
