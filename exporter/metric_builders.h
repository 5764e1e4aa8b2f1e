// Helpers to build prometheus-cpp MetricFamily values by hand, used by every snapshot -> families conversion.
#pragma once

#include <prometheus/metric_family.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/model/process_book.h"

namespace sp::exporter {

using LabelList = std::vector<std::pair<std::string, std::string>>;

// `worker`, `worker_app` and, for a worker in a Kubernetes pod, `pod`, `namespace`, `container`: the labels every
// per-worker series starts with.
LabelList worker_label_list(const WorkerLabels& w);

prometheus::ClientMetric gauge_point(const LabelList& labels, double value);
prometheus::ClientMetric counter_point(const LabelList& labels, double value);

// A histogram point from per-bucket counts whose upper bounds are `bounds_seconds` (the last count is +Inf).
prometheus::ClientMetric histogram_point(const LabelList& labels, const std::vector<double>& bounds_seconds,
                                         const std::vector<std::uint64_t>& per_bucket, double sum);

prometheus::MetricFamily gauge_metric(std::string name, std::string help, std::vector<prometheus::ClientMetric> points);
prometheus::MetricFamily counter_metric(std::string name, std::string help,
                                        std::vector<prometheus::ClientMetric> points);
prometheus::MetricFamily histogram_metric(std::string name, std::string help,
                                          std::vector<prometheus::ClientMetric> points);

// Capping a label fed by outside input (tables named in SQL, Synapse's transaction names): the `n` values with the
// most weight keep their name (ties broken by name, so the choice is stable); the caller exports the rest as "other".
std::set<std::string> top_n_by_weight(const std::map<std::string, std::uint64_t>& weight, std::size_t n);

// Serialises families as Prometheus text exposition format 0.0.4 (what /metrics serves).
std::string to_text(const std::vector<prometheus::MetricFamily>& families);

}  // namespace sp::exporter
