// How much of a process's client-side query time overlapped its own GC pauses. While a collection runs, the thread
// that ran it holds the GIL, so a pool thread whose query returns meanwhile cannot continue: Synapse's transaction
// times swell by the overlap. Fed with both event streams (in any order, as they are drained from two ring
// buffers), it counts each (query, pause) pair exactly once: when the second of the two arrives.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <utility>

namespace sp {

class OverlapTracker {
 public:
  // Intervals are kept for `window_ns` after the newest end seen for the process: an event drained later than that
  // after its counterpart is not paired (the agent drains every 250 ms, so the default leaves ample room).
  explicit OverlapTracker(std::uint64_t window_ns = 60'000'000'000ULL) : window_ns_(window_ns) {}

  // Each returns the overlap (ns) newly counted for `tgid`.
  std::uint64_t add_pause(std::uint32_t tgid, std::uint64_t start_ns, std::uint64_t end_ns);
  std::uint64_t add_query(std::uint32_t tgid, std::uint64_t start_ns, std::uint64_t end_ns);
  void forget(std::uint32_t tgid) { per_process_.erase(tgid); }

 private:
  using Interval = std::pair<std::uint64_t, std::uint64_t>;
  struct Process {
    // Each sorted by end, so that pruning takes a prefix and pairing scans a short suffix (per-event cost does not
    // grow with the window: at 500 calls/s a 60 s window holds 30 000 queries per process).
    std::deque<Interval> pauses;
    std::deque<Interval> queries;
    std::uint64_t newest_end = 0;
  };
  std::uint64_t add(std::uint32_t tgid, Interval iv, bool pause);
  void prune(Process& p) const;

  std::uint64_t window_ns_;
  std::map<std::uint32_t, Process> per_process_;
};

}  // namespace sp
