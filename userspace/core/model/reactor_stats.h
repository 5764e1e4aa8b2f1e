// What the reactor probe family hands the exporter: per worker, the reactor thread's ticks (epoll return -> next epoll
// call) in Synapse's own tick buckets and the time it waited in epoll, retired totals of restarted processes
// included; the reactor's busy time per thread state (tick split) and every thread's time per role and state.
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

// The `state` label of reactor_busy_seconds_total and thread_seconds_total, in bpf/reactor.h's SP_ST_* order.
inline constexpr std::array<const char*, SP_STATES> kThreadStateNames = {"on_cpu", "runqueue", "lock_wait",
                                                                         "disk",   "idle",     "other_wait"};
// The `role` label: the main thread (its reactor) and every other thread. ("db", threads seen in libpq, needs the
// libpq family's per-thread state and is not split out yet.)
enum class ThreadRole : std::size_t { kReactor = 0, kOther = 1 };
inline constexpr std::array<const char*, 2> kThreadRoleNames = {"reactor", "other"};

using StateNs = std::array<std::uint64_t, SP_STATES>;

inline void add_states(StateNs& to, const StateNs& from) {
  for (std::size_t i = 0; i < to.size(); ++i) to[i] += from[i];
}

// Time per state: inside the reactor's ticks (busy) and per thread role.
struct ThreadStates {
  StateNs busy{};                                        // the reactor thread, inside ticks
  std::array<StateNs, kThreadRoleNames.size()> roles{};  // every thread, by role
  void add(const ThreadStates& o) {
    add_states(busy, o.busy);
    for (std::size_t r = 0; r < roles.size(); ++r) add_states(roles[r], o.roles[r]);
  }
};

struct ReactorSeries {
  TickHistogram ticks;
  std::uint64_t waits = 0;        // epoll calls whose entry and return were both seen
  std::uint64_t wait_sum_ns = 0;  // time in them
  ThreadStates states;
  void add(const ReactorSeries& o) {
    ticks.add(o.ticks);
    waits += o.waits;
    wait_sum_ns += o.wait_sum_ns;
    states.add(o.states);
  }
};

struct ReactorSnapshot {
  std::map<WorkerLabels, ReactorSeries> series;
  std::vector<ProbeStatus> status;
  std::uint64_t threads_lost = 0;  // threads whose states the kernel could not count
};

}  // namespace sp
