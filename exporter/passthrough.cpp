#include "exporter/passthrough.h"

#include <cmath>
#include <limits>

#include "core/log.h"
#include "exporter/families.h"

namespace sp::exporter {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The worker's labels first (worker, worker_app, in a pod also pod/namespace/container), the scraped labels after,
// renamed when they clash with one we add; `drop` (le, quantile) left out.
std::vector<prometheus::ClientMetric::Label> relabel(const WorkerLabels& worker, const Labels& scraped,
                                                     const char* drop = nullptr) {
  std::vector<prometheus::ClientMetric::Label> out;
  for (auto& [k, v] : worker_label_list(worker)) out.push_back({std::move(k), std::move(v)});
  const std::size_t ours = out.size();
  for (const auto& [k, v] : scraped) {
    if (drop && k == drop) continue;
    bool clash = false;
    for (std::size_t i = 0; i < ours; ++i) clash = clash || out[i].name == k;
    out.push_back({clash ? "exported_" + k : k, v});
  }
  return out;
}

const std::string* label(const Labels& labels, const std::string& key) {
  for (const auto& [k, v] : labels) {
    if (k == key) return &v;
  }
  return nullptr;
}

bool parse_bound(const std::string& text, double& out) {
  if (text == "+Inf" || text == "Inf") {
    out = std::numeric_limits<double>::infinity();
    return true;
  }
  try {
    std::size_t used = 0;
    out = std::stod(text, &used);
    return used == text.size();
  } catch (...) {
    return false;
  }
}

prometheus::MetricType type_of(const std::string& t) {
  if (t == "counter") return prometheus::MetricType::Counter;
  if (t == "gauge") return prometheus::MetricType::Gauge;
  if (t == "histogram") return prometheus::MetricType::Histogram;
  if (t == "summary") return prometheus::MetricType::Summary;
  return prometheus::MetricType::Untyped;
}

// Histograms and summaries arrive as separate samples (_bucket/_sum/_count, quantiles): prometheus-cpp wants one
// structured point per label set, so group them.
void add_grouped(const prom::Family& f, const WorkerLabels& worker, std::vector<prometheus::ClientMetric>& out) {
  const bool histogram = f.type == "histogram";
  const char* key_label = histogram ? "le" : "quantile";
  std::map<std::vector<prometheus::ClientMetric::Label>, std::size_t> index;  // label set -> its point
  std::vector<prometheus::ClientMetric> points;
  for (const auto& s : f.samples) {
    auto labels = relabel(worker, s.labels, key_label);
    auto [it, fresh] = index.try_emplace(labels, points.size());
    if (fresh) {
      prometheus::ClientMetric m;
      m.label = labels;
      points.push_back(std::move(m));
    }
    prometheus::ClientMetric& m = points[it->second];
    std::string suffix = s.name.size() > f.name.size() ? s.name.substr(f.name.size()) : "";
    if (suffix == "_sum") {
      (histogram ? m.histogram.sample_sum : m.summary.sample_sum) = s.value;
    } else if (suffix == "_count") {
      auto n = static_cast<std::uint64_t>(std::max(0.0, s.value));
      (histogram ? m.histogram.sample_count : m.summary.sample_count) = n;
    } else if (histogram && suffix == "_bucket") {
      double le = 0;
      const std::string* text = label(s.labels, "le");
      if (text && parse_bound(*text, le)) {
        m.histogram.bucket.push_back({static_cast<std::uint64_t>(std::max(0.0, s.value)), le});
      }
    } else if (!histogram && suffix.empty()) {
      double q = 0;
      const std::string* text = label(s.labels, "quantile");
      if (text && parse_bound(*text, q)) m.summary.quantile.push_back({q, s.value});
    }
  }
  for (auto& m : points) out.push_back(std::move(m));
}

}  // namespace

bool PassthroughFilter::keeps(const std::string& family) const {
  if (include && !std::regex_match(family, *include)) return false;
  if (exclude && std::regex_match(family, *exclude)) return false;
  return true;
}

std::vector<prometheus::MetricFamily> passthrough_families(const std::map<std::string, ScrapeResult>& latest,
                                                           const PassthroughFilter& filter) {
  std::map<std::string, prometheus::MetricFamily> merged;  // by name: one family per name in the exposition
  for (const auto& [worker, result] : latest) {
    if (!result.up || !result.families) continue;
    for (const auto& f : *result.families) {
      if (!filter.keeps(f.name) || f.name.starts_with("synapse_profiler_")) continue;
      auto [it, fresh] = merged.try_emplace(f.name);
      prometheus::MetricFamily& out = it->second;
      if (fresh) {
        out.name = f.name;
        out.help = f.help;
        out.type = type_of(f.type);
      } else if (out.type != type_of(f.type)) {
        log::debug("pass-through: {} of worker {} is a {}, another worker's is not: skipped", f.name, worker, f.type);
        continue;
      }
      const WorkerLabels labels{worker, result.worker_app, result.pod};
      if (f.type == "histogram" || f.type == "summary") {
        add_grouped(f, labels, out.metric);
        continue;
      }
      for (const auto& s : f.samples) {
        prometheus::ClientMetric m;
        m.label = relabel(labels, s.labels);
        switch (out.type) {
          case prometheus::MetricType::Counter: m.counter.value = s.value; break;
          case prometheus::MetricType::Gauge: m.gauge.value = s.value; break;
          default: m.untyped.value = s.value; break;
        }
        out.metric.push_back(std::move(m));
      }
    }
  }
  std::vector<prometheus::MetricFamily> out;
  for (auto& [name, f] : merged) out.push_back(std::move(f));
  return out;
}

std::vector<prometheus::MetricFamily> scrape_status_families(const std::map<std::string, ScrapeResult>& latest) {
  std::vector<prometheus::ClientMetric> up, duration;
  for (const auto& [worker, r] : latest) {
    const LabelList l = worker_label_list({worker, r.worker_app, r.pod});
    up.push_back(gauge_point(l, r.up ? 1 : 0));
    duration.push_back(gauge_point(l, r.duration_seconds));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(gauge_family("synapse_profiler_synapse_up",
                             "1 when the worker's own metrics endpoint answered the last scrape with valid text.",
                             std::move(up)));
  out.push_back(gauge_family("synapse_profiler_synapse_scrape_duration_seconds",
                             "Duration of the last scrape of the worker's metrics endpoint (transfer and parse).",
                             std::move(duration)));
  return out;
}

}  // namespace sp::exporter
