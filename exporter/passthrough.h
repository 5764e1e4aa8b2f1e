// Synapse's own metrics, re-exposed: every series scraped from each worker with `worker` and `worker_app` labels
// added (a scraped label of the same name is kept as `exported_worker` / `exported_worker_app`), families of the same
// name from different workers merged into one, filtered by --synapse-metrics-include/--exclude. Plus the scrape
// status series synapse_profiler_synapse_up and synapse_profiler_synapse_scrape_duration_seconds.
#pragma once

#include <prometheus/metric_family.h>

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/scrape/scraper.h"

namespace sp::exporter {

struct PassthroughFilter {
  std::optional<std::regex> include;  // a family is kept when its name matches include (if set) ...
  std::optional<std::regex> exclude;  // ... and does not match exclude (if set)
  bool keeps(const std::string& family) const;
};

// `latest`: worker name -> its last scrape result.
std::vector<prometheus::MetricFamily> passthrough_metrics(const std::map<std::string, ScrapeResult>& latest,
                                                           const PassthroughFilter& filter);
std::vector<prometheus::MetricFamily> scrape_status_metrics(const std::map<std::string, ScrapeResult>& latest);

}  // namespace sp::exporter
