#include "exporter/probe_metrics.h"

#include <string>

#include "exporter/families.h"

namespace sp::exporter {
namespace {

const std::vector<double>& latency_bounds_seconds() {
  static const std::vector<double> bounds = [] {
    std::vector<double> b;
    for (auto ns : kLatencyBoundsNs) b.push_back(static_cast<double>(ns) / 1e9);
    return b;
  }();
  return bounds;
}

std::string generation_label(int gen) { return gen < 0 ? "unknown" : std::to_string(gen); }

}  // namespace

std::vector<prometheus::MetricFamily> gc_families(const GcSnapshot& snap) {
  std::vector<prometheus::ClientMetric> pauses;
  std::vector<prometheus::ClientMetric> collected;
  for (const auto& [key, s] : snap.series) {
    const auto& [labels, gen] = key;
    LabelList l = {{"worker", labels.worker}, {"worker_app", labels.worker_app}, {"generation", generation_label(gen)}};
    std::vector<std::uint64_t> per_bucket(s.pauses.buckets.begin(), s.pauses.buckets.end());
    pauses.push_back(
        histogram_point(l, latency_bounds_seconds(), per_bucket, static_cast<double>(s.pauses.sum_ns) / 1e9));
    collected.push_back(counter_point(l, static_cast<double>(s.collected)));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(histogram_family("synapse_profiler_gc_pause_seconds",
                                 "Python garbage-collection pauses measured in the kernel, per worker and generation.",
                                 std::move(pauses)));
  out.push_back(counter_family("synapse_profiler_gc_collected_objects_total",
                               "Objects freed by Python garbage collections (collections whose count was readable).",
                               std::move(collected)));
  return out;
}

prometheus::MetricFamily probe_attached_family(const std::vector<ProbeStatus>& status) {
  std::vector<prometheus::ClientMetric> points;
  for (const auto& s : status) {
    points.push_back(gauge_point({{"worker", s.labels.worker},
                                  {"worker_app", s.labels.worker_app},
                                  {"probe", s.probe},
                                  {"method", s.method}},
                                 s.attached ? 1 : 0));
  }
  return gauge_family("synapse_profiler_probe_attached",
                      "1 when the probe family is attached to the worker by this method, 0 when attaching failed.",
                      std::move(points));
}

prometheus::MetricFamily events_lost_family(const std::vector<std::pair<std::string, std::uint64_t>>& lost) {
  std::vector<prometheus::ClientMetric> points;
  for (const auto& [probe, n] : lost) points.push_back(counter_point({{"probe", probe}}, static_cast<double>(n)));
  return counter_family("synapse_profiler_events_lost_total",
                        "Per-event records dropped because the ring buffer was full (in-kernel counts are unaffected).",
                        std::move(points));
}

}  // namespace sp::exporter
