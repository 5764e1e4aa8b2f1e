// The PostgreSQL server-side family as the agent runs it: attaches to every postgres binary a discovered cluster
// runs, maps each backend to the Synapse worker it serves (its client socket's peer belongs to the worker; see
// core/socket_inventory.h), and attributes queries, lock waits and transaction outcomes to that worker, or to
// worker "other" for backends that serve no discovered Synapse process.
//
// A backend serves one connection for life, so its mapping is decided once: at the rescan after it appears, or as
// soon as one of its queries arrives (a connection opened between rescans is mapped then). Limitation: a backend
// whose worker is not discovered yet when it is decided stays "other".
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bpf/pgserver_probe.h"
#include "core/db_stats.h"
#include "core/discovery.h"
#include "core/socket_inventory.h"

namespace sp::bpf {

class PgServerFamily {
 public:
  explicit PgServerFamily(std::string proc_root);
  ~PgServerFamily();

  bool start(std::string& error);
  bool started() const { return probe_ != nullptr; }

  void update(const ScanResult& current);
  void poll();
  DbServerSnapshot snapshot() const;

 private:
  // Decides the backends in `backend_pids` not decided yet; caller holds mutex_.
  void map_backends(const std::vector<int>& backend_pids);
  const WorkerLabels& labels_of(int backend_pid) const;  // caller holds mutex_

  std::string proc_root_;
  std::unique_ptr<PgServerProbe> probe_;
  BackendMapper mapper_;

  mutable std::mutex mutex_;
  std::map<int, WorkerLabels> worker_labels_;   // worker PID (as in proc_root) -> labels, from the last scan
  std::map<int, WorkerLabels> backend_labels_;  // decided backends -> the worker they serve (or "other")
  std::set<int> live_backends_;                 // backends of the last scan
  std::map<std::string, std::set<int>> binaries_;  // attached binary key -> postmasters using it
  std::vector<std::string> attach_errors_;
  std::map<std::pair<WorkerLabels, std::string>, LatencyHistogram> queries_;
  ProcessBook<int, BackendTotals> backends_;  // by backend PID; key unused (0)
  std::chrono::steady_clock::time_point last_event_remap_{};
};

}  // namespace sp::bpf
