// Reactor snapshot -> exposition text: the whole text for one worker, Synapse's tick buckets exactly.
#include <gtest/gtest.h>

#include "exporter/metric_builders.h"
#include "exporter/probe_metrics.h"

TEST(ReactorMetrics, TicksInSynapsesBucketsAndPollWaitSeconds) {
  sp::ReactorSnapshot snap;
  sp::ReactorSeries s;
  for (std::uint64_t ns : {1'000'000ULL, 1'000'001ULL, 25'000'000ULL, 5'000'000'000ULL, 5'000'000'001ULL}) {
    s.ticks.record(ns);
  }
  s.waits = 5;
  s.wait_sum_ns = 1'500'000'000;
  snap.series[{"synchrotron1", "synapse.app.generic_worker"}] = s;
  // 1 ms and 5 s are inclusive bounds, like `le`; 10.027000002 s = 1 ms + 1.000001 ms + 25 ms + 5 s + 5.000000001 s.
  EXPECT_EQ(
      sp::exporter::to_text(sp::exporter::reactor_metrics(snap)),
      R"(# HELP synapse_profiler_reactor_tick_seconds Reactor ticks measured in the kernel: on the worker's main thread, from a return of epoll_wait/epoll_pwait/epoll_pwait2 to the next call (Synapse's python_twisted_reactor_tick_time, with its buckets).
# TYPE synapse_profiler_reactor_tick_seconds histogram
synapse_profiler_reactor_tick_seconds_count{worker="synchrotron1",worker_app="synapse.app.generic_worker"} 5
synapse_profiler_reactor_tick_seconds_sum{worker="synchrotron1",worker_app="synapse.app.generic_worker"} 10.027000002
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.001"} 1
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.002"} 2
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.005"} 2
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.01"} 2
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.025"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.05"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.1"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.2"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="0.5"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="1"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="2"} 3
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="5"} 4
synapse_profiler_reactor_tick_seconds_bucket{worker="synchrotron1",worker_app="synapse.app.generic_worker",le="+Inf"} 5
# HELP synapse_profiler_reactor_poll_wait_seconds_total Seconds the worker's main thread waited in epoll (idle reactor).
# TYPE synapse_profiler_reactor_poll_wait_seconds_total counter
synapse_profiler_reactor_poll_wait_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker"} 1.5
)");
}
