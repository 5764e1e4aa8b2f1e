#include "exporter/self_metrics.h"

#include "exporter/families.h"

namespace sp::exporter {

std::vector<prometheus::MetricFamily> self_families(const SelfSnapshot& snap) {
  std::vector<prometheus::MetricFamily> out;
  out.push_back(gauge_family("synapse_profiler_build_info", "Build of the running synapse-profiler; value is always 1.",
                             {gauge_point({{"version", snap.version}}, 1)}));

  std::vector<prometheus::ClientMetric> info;
  for (const auto& w : snap.workers) {
    info.push_back(gauge_point({{"worker", w.worker_name},
                                {"worker_app", w.worker_app},
                                {"pid", std::to_string(w.host_pid)},
                                {"metrics_url", w.metrics_url.value_or("")}},
                               1));
  }
  out.push_back(gauge_family("synapse_profiler_worker_info",
                             "A discovered Synapse process (main or worker); value is always 1.", std::move(info)));
  out.push_back(gauge_family("synapse_profiler_workers", "Number of Synapse processes currently discovered.",
                             {gauge_point({}, static_cast<double>(snap.workers.size()))}));
  return out;
}

}  // namespace sp::exporter
