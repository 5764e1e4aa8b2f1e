// What the reactor probe family hands the exporter: per worker, the reactor thread's ticks (epoll return -> next epoll
// call) in Synapse's own tick buckets and the time it waited in epoll, retired totals of restarted processes
// included.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "core/model/gc_stats.h"  // ProbeStatus
#include "core/model/latency_histogram.h"
#include "core/model/process_book.h"
#include "reactor.h"  // bpf/reactor.h: SP_TICK_BOUNDS_NS

namespace sp {

inline constexpr std::array<std::uint64_t, SP_TICK_BOUNDS> kTickBoundsNs = SP_TICK_BOUNDS_NS;
using TickHistogram = BucketHistogram<SP_TICK_BOUNDS, &kTickBoundsNs>;

struct ReactorSeries {
  TickHistogram ticks;
  std::uint64_t waits = 0;        // epoll calls whose entry and return were both seen
  std::uint64_t wait_sum_ns = 0;  // time in them
  void add(const ReactorSeries& o) {
    ticks.add(o.ticks);
    waits += o.waits;
    wait_sum_ns += o.wait_sum_ns;
  }
};

struct ReactorSnapshot {
  std::map<WorkerLabels, ReactorSeries> series;
  std::vector<ProbeStatus> status;
};

}  // namespace sp
