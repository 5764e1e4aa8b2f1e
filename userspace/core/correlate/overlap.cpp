#include "core/correlate/overlap.h"

#include <algorithm>

namespace sp {

std::uint64_t OverlapTracker::add_pause(std::uint32_t tgid, std::uint64_t start_ns, std::uint64_t end_ns) {
  return add(tgid, {start_ns, end_ns}, true);
}

std::uint64_t OverlapTracker::add_query(std::uint32_t tgid, std::uint64_t start_ns, std::uint64_t end_ns) {
  return add(tgid, {start_ns, end_ns}, false);
}

void OverlapTracker::prune(Process& p) const {
  if (p.newest_end < window_ns_) return;
  const std::uint64_t horizon = p.newest_end - window_ns_;
  for (auto* list : {&p.pauses, &p.queries}) {
    std::erase_if(*list, [&](const Interval& iv) { return iv.second < horizon; });
  }
}

std::uint64_t OverlapTracker::add(std::uint32_t tgid, Interval iv, bool pause) {
  if (iv.second <= iv.first) return 0;
  Process& p = per_process_[tgid];
  std::uint64_t total = 0;
  // Pauses of one process never overlap each other (one collection at a time), so summing pairwise overlaps of a
  // query with each pause counts no time twice.
  for (const Interval& other : pause ? p.queries : p.pauses) {
    std::uint64_t lo = std::max(iv.first, other.first);
    std::uint64_t hi = std::min(iv.second, other.second);
    if (hi > lo) total += hi - lo;
  }
  (pause ? p.pauses : p.queries).push_back(iv);
  p.newest_end = std::max(p.newest_end, iv.second);
  prune(p);
  return total;
}

}  // namespace sp
