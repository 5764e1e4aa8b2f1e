// What /metrics serves, built on every scrape from the profiling loop's current state (pull, as prometheus-cpp's
// Collectable does): the agent's own series, each probe family's contribution in list order, every family's attach
// status and health, the hub's correlation series, the workers' scrape status and pass-through series, and the
// loop's counters. The exporter's server calls collect() from its own threads.
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "agent/profiling_loop.h"
#include "exporter/passthrough.h"

namespace sp::agent {

class Exposition {
 public:
  Exposition(const ProfilingLoop& loop, exporter::PassthroughFilter filter, std::string version)
      : loop_(loop), filter_(std::move(filter)), version_(std::move(version)) {}

  std::vector<prometheus::MetricFamily> collect() const;

 private:
  const ProfilingLoop& loop_;
  const exporter::PassthroughFilter filter_;
  const std::string version_;
};

}  // namespace sp::agent
