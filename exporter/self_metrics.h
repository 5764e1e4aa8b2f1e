// The agent's own series: build_info, one worker_info per discovered Synapse process, and the worker count.
// A pure function from a snapshot to metric families, so that it is tested as exposition text.
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "core/proc/discovery.h"

namespace sp::exporter {

struct SelfSnapshot {
  std::string version;
  std::vector<WorkerInfo> workers;
};

std::vector<prometheus::MetricFamily> self_metrics(const SelfSnapshot& snap);

}  // namespace sp::exporter
