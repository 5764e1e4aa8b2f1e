#include "exporter/metric_builders.h"

#include <algorithm>
#include <limits>

#include "exporter/text_writer.h"

namespace sp::exporter {
namespace {

prometheus::ClientMetric labelled(const LabelList& labels) {
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  return m;
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type,
                                std::vector<prometheus::ClientMetric> points) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  f.metric = std::move(points);
  return f;
}

}  // namespace

LabelList worker_label_list(const WorkerLabels& w) {
  LabelList l = {{"worker", w.worker}, {"worker_app", w.worker_app}};
  if (w.pod) {
    l.insert(l.end(), {{"pod", w.pod->pod}, {"namespace", w.pod->namespace_name}, {"container", w.pod->container}});
  }
  return l;
}

prometheus::ClientMetric gauge_point(const LabelList& labels, double value) {
  auto m = labelled(labels);
  m.gauge.value = value;
  return m;
}

prometheus::ClientMetric counter_point(const LabelList& labels, double value) {
  auto m = labelled(labels);
  m.counter.value = value;
  return m;
}

prometheus::ClientMetric histogram_point(const LabelList& labels, const std::vector<double>& bounds_seconds,
                                         const std::vector<std::uint64_t>& per_bucket, double sum) {
  auto m = labelled(labels);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < per_bucket.size(); ++i) {
    cumulative += per_bucket[i];
    double le = i < bounds_seconds.size() ? bounds_seconds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back({cumulative, le});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
  return m;
}

prometheus::MetricFamily gauge_metric(std::string name, std::string help, std::vector<prometheus::ClientMetric> points) {
  return family(std::move(name), std::move(help), prometheus::MetricType::Gauge, std::move(points));
}

prometheus::MetricFamily counter_metric(std::string name, std::string help,
                                        std::vector<prometheus::ClientMetric> points) {
  return family(std::move(name), std::move(help), prometheus::MetricType::Counter, std::move(points));
}

prometheus::MetricFamily histogram_metric(std::string name, std::string help,
                                          std::vector<prometheus::ClientMetric> points) {
  return family(std::move(name), std::move(help), prometheus::MetricType::Histogram, std::move(points));
}

std::string to_text(const std::vector<prometheus::MetricFamily>& families) {
  std::string out;
  append_text(out, families);
  return out;
}

std::set<std::string> top_n_by_weight(const std::map<std::string, std::uint64_t>& weight, std::size_t n) {
  std::vector<std::pair<std::uint64_t, std::string>> ranked;
  for (const auto& [value, w] : weight) ranked.emplace_back(w, value);
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::set<std::string> kept;
  for (std::size_t i = 0; i < ranked.size() && i < n; ++i) kept.insert(ranked[i].second);
  return kept;
}

}  // namespace sp::exporter
