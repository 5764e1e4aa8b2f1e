// Per-worker totals that survive process restarts. The kernel keeps counters per process (host TGID); when a worker
// restarts it gets a new PID and fresh kernel counters. A ProcessBook keeps each live process's latest values and, when
// the process goes, folds them into its worker's retired totals, so exported counters stay monotonic per worker.
//
// Key: what a series is split by besides the worker (e.g. the GC generation). Value: anything with add().
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "core/proc/pod_identity.h"

namespace sp {

struct WorkerLabels {
  std::string worker;
  std::string worker_app;
  std::optional<PodLabels> pod = std::nullopt;  // node-wide mode, a worker in a Kubernetes pod
  auto operator<=>(const WorkerLabels&) const = default;
};

// Erases every entry of worker `w` from a map keyed by (WorkerLabels, something); returns how many went.
template <typename Map>
std::size_t erase_worker(Map& m, const WorkerLabels& w) {
  return std::erase_if(m, [&](const auto& entry) { return entry.first.first == w; });
}

template <typename Key, typename Value>
class ProcessBook {
 public:
  // Replaces everything known live about `tgid` under `key` (kernel counters are cumulative per process).
  void set_live(int tgid, const WorkerLabels& labels, const Key& key, const Value& value) {
    auto& proc = live_[tgid];
    proc.labels = labels;
    proc.values[key] = value;
  }

  bool has_live(int tgid) const { return live_.count(tgid) != 0; }

  // The process has gone: its last values become part of its worker's retired totals.
  void retire(int tgid) {
    auto it = live_.find(tgid);
    if (it == live_.end()) return;
    for (const auto& [key, value] : it->second.values) retired_[{it->second.labels, key}].add(value);
    live_.erase(it);
  }

  // A worker gone for good (--forget-after): its retired totals are dropped. A live process under the same labels
  // keeps its values, so this never takes back what a running process reported.
  void forget(const WorkerLabels& w) { erase_worker(retired_, w); }

  // Retired + live, per (worker labels, key).
  std::map<std::pair<WorkerLabels, Key>, Value> totals() const {
    auto out = retired_;
    for (const auto& [tgid, proc] : live_) {
      for (const auto& [key, value] : proc.values) out[{proc.labels, key}].add(value);
    }
    return out;
  }

 private:
  struct Live {
    WorkerLabels labels;
    std::map<Key, Value> values;
  };
  std::map<int, Live> live_;
  std::map<std::pair<WorkerLabels, Key>, Value> retired_;
};

}  // namespace sp
