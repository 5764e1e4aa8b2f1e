// The PostgreSQL server-side family: attaches to every postgres binary a discovered cluster
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

#include "agent/families/backend_decisions.h"
#include "agent/families/pgserver_kernel.h"
#include "agent/families/kernel_family.h"
#include "core/model/db_stats.h"
#include "core/postgres/backend_map.h"
#include "core/proc/discovery.h"

namespace sp::agent {

class PgServerFamily : public KernelFamily<PgServerKernel>, public BackendDecisions {
 public:
  // Which worker each backend serves (PIDs as in proc_root), for the backends given; see BackendMapper::map.
  using BackendLinker = std::function<std::vector<BackendLink>(const std::vector<int>& worker_pids,
                                                               const std::vector<int>& backend_pids,
                                                               std::string& error)>;
  // `link`: empty for the real one (socket dumps under proc_root, core/proc/socket_inventory.h).
  PgServerFamily(std::string proc_root, PgServerKernelOpener open, BackendLinker link = {});
  ~PgServerFamily() override;

  const char* name() const override { return "postgres"; }
  // Attaches to each postgres binary in use, then decides every backend the scan lists (see the top of this file).
  void update(const ScanResult& current, const ScanDiff& diff) override;
  // Statement and lock-wait records only (when a ring fills up between two polls).
  void drain() override;
  // The records, then the per-backend counts.
  void poll() override;
  void forget_worker(const WorkerLabels& w) override;
  void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override;

  DbServerSnapshot snapshot() const;
  std::map<int, WorkerLabels> backend_decisions() const override;
  std::set<int> undecided_backends() const override;
  // Whether the statements handed to the sink carry their fingerprint (recordings) or only their verb (the agent's
  // series; the default is true). Statements of backends serving nobody we profile never carry one.
  void set_fingerprints(bool on) { fingerprints_ = on; }

 private:
  // Maps the backends in `backend_pids` not decided yet. With `final`, those not mapped are decided "other";
  // otherwise they stay undecided. Caller holds mutex_.
  void map_backends(const std::vector<int>& backend_pids, bool final);
  // Attributes drained records, or holds those of undecided backends; caller holds mutex_.
  void attribute(std::vector<pgs_query_event> events);
  void account(const pgs_query_event& e);
  // Hands the lock waits of backends serving a worker to the sink; caller holds mutex_.
  void hand_on_lock_waits(const std::vector<pgs_lock_event>& locks);
  // The kernel's per-backend counts of every decided backend, as its live totals; caller holds mutex_.
  void read_totals();
  const WorkerLabels& labels_of(int backend_pid) const;  // caller holds mutex_

  std::string proc_root_;
  BackendLinker link_;
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

}  // namespace sp::agent
