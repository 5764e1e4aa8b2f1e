// What the GC probe family hands the exporter: per (worker, generation) pause histograms and collected counts,
// retired totals of restarted processes included, plus the family's attach status per worker.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model/latency_histogram.h"
#include "core/model/probe_status.h"
#include "core/model/process_book.h"

namespace sp {

struct GcSeries {
  LatencyHistogram pauses;
  std::uint64_t collected = 0;          // objects collected, over collections whose count was readable
  std::uint64_t collected_unknown = 0;  // collections whose count could not be read
  void add(const GcSeries& o) {
    pauses.add(o.pauses);
    collected += o.collected;
    collected_unknown += o.collected_unknown;
  }
};

struct GcSnapshot {
  std::map<std::pair<WorkerLabels, int>, GcSeries> series;  // key: labels, generation (-1: unknown)
  std::vector<ProbeStatus> status;
  std::uint64_t events_lost = 0;
  std::uint64_t events_received = 0;
};

}  // namespace sp
