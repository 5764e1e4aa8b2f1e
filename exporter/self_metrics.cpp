#include "exporter/self_metrics.h"

#include "exporter/metric_builders.h"

namespace sp::exporter {

std::vector<prometheus::MetricFamily> self_metrics(const SelfSnapshot& snap) {
  std::vector<prometheus::MetricFamily> out;
  out.push_back(gauge_metric("synapse_profiler_build_info", "Build of the running synapse-profiler; value is always 1.",
                             {gauge_point({{"version", snap.version}}, 1)}));

  std::vector<prometheus::ClientMetric> info;
  for (const auto& w : snap.workers) {
    LabelList l = worker_label_list(labels_of(w));
    l.insert(l.end(), {{"pid", std::to_string(w.host_pid)}, {"metrics_url", w.metrics_url.value_or("")}});
    // In a pod, the identifiers too (pod/container hold names once the kubelet's log directories resolve them).
    if (w.pod) l.insert(l.end(), {{"pod_uid", w.pod->pod_uid}, {"container_id", w.pod->container_id}});
    info.push_back(gauge_point(l, 1));
  }
  out.push_back(gauge_metric("synapse_profiler_worker_info",
                             "A discovered Synapse process (main or worker); value is always 1.", std::move(info)));
  out.push_back(gauge_metric("synapse_profiler_workers", "Number of Synapse processes currently discovered.",
                             {gauge_point({}, static_cast<double>(snap.workers.size()))}));
  return out;
}

}  // namespace sp::exporter
