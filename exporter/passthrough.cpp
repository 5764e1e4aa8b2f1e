#include "exporter/passthrough.h"

#include <algorithm>
#include <string_view>

#include "core/util/log.h"
#include "core/scrape/prom_text.h"
#include "exporter/metric_builders.h"

namespace sp::exporter {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The worker's labels first (`ours`: worker, worker_app, in a pod also pod/namespace/container), the scraped labels
// after, renamed when they clash with one we add; `drop` (le, quantile) left out.
std::vector<prometheus::ClientMetric::Label> relabel(const LabelList& ours, const Labels& scraped,
                                                     const char* drop = nullptr) {
  std::vector<prometheus::ClientMetric::Label> out;
  out.reserve(ours.size() + scraped.size());
  for (const auto& [k, v] : ours) out.push_back({k, v});
  for (const auto& [k, v] : scraped) {
    if (drop && k == drop) continue;
    bool clash = false;
    for (const auto& o : ours) clash = clash || o.first == k;
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

// `a` and `b` are the same label set once `drop` is left out of both.
bool same_labels_but(const Labels& a, const Labels& b, const char* drop) {
  std::size_t i = 0, j = 0;
  for (;;) {
    while (i < a.size() && a[i].first == drop) ++i;
    while (j < b.size() && b[j].first == drop) ++j;
    if (i == a.size() || j == b.size()) return i == a.size() && j == b.size();
    if (a[i] != b[j]) return false;
    ++i, ++j;
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
// structured point per label set, so group them. A series' samples are usually adjacent (clients write them so): a
// sample with the previous one's labels goes to the same point without building and looking up its label set.
void add_grouped(const prom::Family& f, const LabelList& ours, std::vector<prometheus::ClientMetric>& out) {
  const bool histogram = f.type == "histogram";
  const char* key_label = histogram ? "le" : "quantile";
  std::map<std::vector<prometheus::ClientMetric::Label>, std::size_t> index;  // label set -> its point
  std::vector<prometheus::ClientMetric> points;
  const Labels* previous = nullptr;
  std::size_t point = 0;
  for (const auto& s : f.samples) {
    if (!previous || !same_labels_but(*previous, s.labels, key_label)) {
      auto labels = relabel(ours, s.labels, key_label);
      auto [it, fresh] = index.try_emplace(labels, points.size());
      if (fresh) {
        prometheus::ClientMetric m;
        m.label = std::move(labels);
        points.push_back(std::move(m));
      }
      point = it->second;
    }
    previous = &s.labels;
    prometheus::ClientMetric& m = points[point];
    const std::string_view suffix = std::string_view(s.name).substr(std::min(f.name.size(), s.name.size()));
    if (suffix == "_sum") {
      (histogram ? m.histogram.sample_sum : m.summary.sample_sum) = s.value;
    } else if (suffix == "_count") {
      auto n = static_cast<std::uint64_t>(std::max(0.0, s.value));
      (histogram ? m.histogram.sample_count : m.summary.sample_count) = n;
    } else if (histogram && suffix == "_bucket") {
      const std::string* text = label(s.labels, "le");
      if (auto le = text ? prom::parse_float(*text) : std::nullopt) {
        m.histogram.bucket.push_back({static_cast<std::uint64_t>(std::max(0.0, s.value)), *le});
      }
    } else if (!histogram && suffix.empty()) {
      const std::string* text = label(s.labels, "quantile");
      if (auto q = text ? prom::parse_float(*text) : std::nullopt) m.summary.quantile.push_back({*q, s.value});
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

std::vector<prometheus::MetricFamily> passthrough_metrics(const std::map<std::string, ScrapeResult>& latest,
                                                           const PassthroughFilter& filter) {
  std::map<std::string, prometheus::MetricFamily> merged;  // by name: one family per name in the exposition
  for (const auto& [worker, result] : latest) {
    if (!result.up || !result.families) continue;
    const LabelList ours = worker_label_list({worker, result.worker_app, result.pod});
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
      if (f.type == "histogram" || f.type == "summary") {
        add_grouped(f, ours, out.metric);
        continue;
      }
      for (const auto& s : f.samples) {
        prometheus::ClientMetric m;
        m.label = relabel(ours, s.labels);
        switch (out.type) {
          case prometheus::MetricType::Counter:
            m.counter.value = s.value;
            break;
          case prometheus::MetricType::Gauge:
            m.gauge.value = s.value;
            break;
          default:
            m.untyped.value = s.value;
            break;
        }
        out.metric.push_back(std::move(m));
      }
    }
  }
  std::vector<prometheus::MetricFamily> out;
  for (auto& [name, f] : merged) out.push_back(std::move(f));
  return out;
}

std::vector<prometheus::MetricFamily> scrape_status_metrics(const std::map<std::string, ScrapeResult>& latest) {
  std::vector<prometheus::ClientMetric> up, duration;
  for (const auto& [worker, r] : latest) {
    const LabelList l = worker_label_list({worker, r.worker_app, r.pod});
    up.push_back(gauge_point(l, r.up ? 1 : 0));
    duration.push_back(gauge_point(l, r.duration_seconds));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(gauge_metric("synapse_profiler_synapse_up",
                             "1 when the worker's own metrics endpoint answered the last scrape with valid text.",
                             std::move(up)));
  out.push_back(gauge_metric("synapse_profiler_synapse_scrape_duration_seconds",
                             "Duration of the last scrape of the worker's metrics endpoint (transfer and parse).",
                             std::move(duration)));
  return out;
}

}  // namespace sp::exporter
