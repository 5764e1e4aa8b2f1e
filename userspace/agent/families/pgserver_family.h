// The PostgreSQL server-side family: maps each backend of every discovered cluster to the Synapse worker it serves
// (its client socket's peer belongs to the worker; see core/proc/socket_inventory.h) and attaches the USDT probes
// to that backend process alone, so that only backends serving a profiled worker trap on their statements; the
// backends of other clients (other databases, applications, pgbench) run untouched. Queries, lock waits and
// transaction outcomes are attributed to the worker the backend serves.
//
// A backend serves one connection for life, so its mapping is decided once. Every rescan decides the backends it
// lists (their clients existed before the connections did: a backend whose peer no discovered worker owns is
// "other", never attached); between rescans, each poll looks for backends the known postmasters forked since and
// attaches those that serve a known worker (the fast path: a new connection is attached within a poll interval, not
// a rescan interval). A backend is detached when it exits or when no discovered worker carries its worker's labels.
// What a backend ran before it was attached is not seen by the server-side probes (see docs/metrics.md).
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
  // Decides every backend the scan lists and attaches to those serving a worker; detaches those gone (see the top
  // of this file).
  void update(const ScanResult& current, const ScanDiff& diff) override;
  // Statement and lock-wait records only (when a ring fills up between two polls).
  void drain() override;
  // New backends of the known clusters (attached if they serve a known worker), the records, then the per-backend
  // counts.
  void poll() override;
  void forget_worker(const WorkerLabels& w) override;
  // Per worker with a decided backend: attached (probe "postgres", method "usdt") once every backend serving it is.
  std::vector<ProbeStatus> attach_status() const override;
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
  // Attaches the probes to each decided backend serving a worker, not attached yet; caller holds mutex_.
  void attach_backends();
  void detach_backend(int pid);  // caller holds mutex_
  void attribute(const std::vector<pgs_query_event>& events);  // caller holds mutex_
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
  std::set<int> looked_up_;                     // new backends mapped between rescans already (once each)
  std::map<int, std::string> postmasters_;      // postmaster PID -> its binary (path inside its root), last scan
  std::map<int, std::string> binary_of_;        // backend PID -> the binary it runs (path the agent can open)
  std::set<int> attach_failed_;                 // backends whose attach failed: not retried (most had just exited)
  std::vector<std::string> attach_errors_;      // the first kMaxAttachErrors
  static constexpr std::size_t kMaxAttachErrors = 16;
  std::map<std::pair<WorkerLabels, std::string>, LatencyHistogram> queries_;
  ProcessBook<int, BackendTotals> backends_;  // by backend PID; key unused (0)
};

}  // namespace sp::agent
