#include "agent/exposition.h"

#include "exporter/probe_metrics.h"
#include "exporter/self_metrics.h"

namespace sp::agent {

std::vector<prometheus::MetricFamily> Exposition::collect() const {
  exporter::SelfSnapshot self;
  self.version = version_;
  self.workers = loop_.workers();
  auto out = exporter::self_metrics(self);

  const HubSnapshot hub = loop_.hub_snapshot();
  std::vector<ProbeStatus> status;
  std::vector<std::pair<std::string, std::uint64_t>> lost, misses;
  for (const auto& f : loop_.families()) {
    f->collect(hub, out);
    for (auto& st : f->attach_status()) status.push_back(std::move(st));
    const FamilyCounts c = f->counts();
    if (c.events_lost) lost.emplace_back(f->name(), *c.events_lost);
    misses.emplace_back(f->name(), c.hook_misses);
  }
  out.push_back(exporter::probe_attached_metric(status));
  for (auto& f : exporter::correlation_metrics(hub.correlation, hub.overlap_ns)) out.push_back(std::move(f));

  const auto scraped = loop_.scrapes();
  for (auto& f : exporter::scrape_status_metrics(scraped)) out.push_back(std::move(f));
  for (auto& f : exporter::passthrough_metrics(scraped, filter_)) out.push_back(std::move(f));

  out.push_back(exporter::events_lost_metric(lost));
  out.push_back(exporter::hook_misses_metric(misses));
  const LoopCounts loop = loop_.counts();
  for (auto& f : exporter::agent_loop_metrics(loop.polls, loop.early_drains, loop.scans)) out.push_back(std::move(f));
  return out;
}

}  // namespace sp::agent
