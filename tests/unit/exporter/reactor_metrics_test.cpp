// Reactor snapshot -> exposition text: the whole text for one worker, Synapse's tick buckets exactly.
#include <gtest/gtest.h>

#include "exporter/families.h"
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
  const std::string l = "worker=\"synchrotron1\",worker_app=\"synapse.app.generic_worker\"";
  const std::string b = "synapse_profiler_reactor_tick_seconds_bucket{" + l;
  EXPECT_EQ(sp::exporter::to_text(sp::exporter::reactor_families(snap)),
            "# HELP synapse_profiler_reactor_tick_seconds Reactor ticks measured in the kernel: on the worker's main "
            "thread, from a return of epoll_wait/epoll_pwait/epoll_pwait2 to the next call (Synapse's "
            "python_twisted_reactor_tick_time, with its buckets).\n"
            "# TYPE synapse_profiler_reactor_tick_seconds histogram\n"
            "synapse_profiler_reactor_tick_seconds_count{" + l + "} 5\n"
            "synapse_profiler_reactor_tick_seconds_sum{" + l + "} 10.027000002\n" +
            b + ",le=\"0.001\"} 1\n" + b + ",le=\"0.002\"} 2\n" + b + ",le=\"0.005\"} 2\n" +
            b + ",le=\"0.01\"} 2\n" + b + ",le=\"0.025\"} 3\n" + b + ",le=\"0.05\"} 3\n" +
            b + ",le=\"0.1\"} 3\n" + b + ",le=\"0.2\"} 3\n" + b + ",le=\"0.5\"} 3\n" + b + ",le=\"1\"} 3\n" +
            b + ",le=\"2\"} 3\n" + b + ",le=\"5\"} 4\n" + b + ",le=\"+Inf\"} 5\n"
            "# HELP synapse_profiler_reactor_poll_wait_seconds_total Seconds the worker's main thread waited in epoll "
            "(idle reactor).\n"
            "# TYPE synapse_profiler_reactor_poll_wait_seconds_total counter\n"
            "synapse_profiler_reactor_poll_wait_seconds_total{" + l + "} 1.5\n");
}
