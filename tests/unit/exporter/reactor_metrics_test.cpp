// Reactor snapshot -> exposition text: the whole text for one worker, Synapse's tick buckets exactly.
#include <gtest/gtest.h>

#include "exporter/metric_builders.h"
#include "exporter/probe_metrics.h"

TEST(ReactorMetrics, TicksInSynapsesBucketsPollWaitSecondsAndThreadStates) {
  sp::ReactorSnapshot snap;
  sp::ReactorSeries s;
  for (std::uint64_t ns : {1'000'000ULL, 1'000'001ULL, 25'000'000ULL, 5'000'000'000ULL, 5'000'000'001ULL}) {
    s.ticks.record(ns);
  }
  s.waits = 5;
  s.wait_sum_ns = 1'500'000'000;
  s.states.busy[SP_ST_ON_CPU] = 10'000'000'000;
  s.states.busy[SP_ST_RUNQUEUE] = 27'000'002;
  s.states.roles[static_cast<std::size_t>(sp::ThreadRole::kReactor)][SP_ST_IDLE] = 1'500'000'000;
  s.states.roles[static_cast<std::size_t>(sp::ThreadRole::kOther)][SP_ST_LOCK_WAIT] = 2'000'000'000;
  snap.series[{"synchrotron1", "synapse.app.generic_worker"}] = s;
  snap.threads_lost = 2;
  // The busy split sums to the ticks (10 s on CPU + 27.000002 ms in the run queue); every state is exported, zeros too.
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
# HELP synapse_profiler_reactor_busy_seconds_total Reactor ticks' time by the main thread's state (scheduler tracepoints): on_cpu, runqueue (runnable, no CPU), lock_wait (futex), disk (I/O wait), idle (epoll), other_wait. Sums to reactor_tick_seconds_sum.
# TYPE synapse_profiler_reactor_busy_seconds_total counter
synapse_profiler_reactor_busy_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",state="on_cpu"} 10
synapse_profiler_reactor_busy_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",state="runqueue"} 0.027000002
synapse_profiler_reactor_busy_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",state="lock_wait"} 0
synapse_profiler_reactor_busy_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",state="disk"} 0
synapse_profiler_reactor_busy_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",state="idle"} 0
synapse_profiler_reactor_busy_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",state="other_wait"} 0
# HELP synapse_profiler_thread_seconds_total Wall time of the worker's threads while profiled, by role (reactor: the main thread; other) and state (as reactor_busy_seconds_total).
# TYPE synapse_profiler_thread_seconds_total counter
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="reactor",state="on_cpu"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="reactor",state="runqueue"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="reactor",state="lock_wait"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="reactor",state="disk"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="reactor",state="idle"} 1.5
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="reactor",state="other_wait"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="other",state="on_cpu"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="other",state="runqueue"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="other",state="lock_wait"} 2
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="other",state="disk"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="other",state="idle"} 0
synapse_profiler_thread_seconds_total{worker="synchrotron1",worker_app="synapse.app.generic_worker",role="other",state="other_wait"} 0
# HELP synapse_profiler_thread_states_lost_total Threads whose states were not counted (kernel table full, or a thread id reused before the agent collected the exited thread's values).
# TYPE synapse_profiler_thread_states_lost_total counter
synapse_profiler_thread_states_lost_total 2
)");
}
