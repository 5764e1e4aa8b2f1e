#include "core/correlate/overlap.h"

#include <algorithm>
#include <iterator>

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
  // Sorted by end: what left the window is a prefix.
  for (auto* list : {&p.pauses, &p.queries}) {
    while (!list->empty() && list->front().second < horizon) list->pop_front();
  }
}

std::uint64_t OverlapTracker::add(std::uint32_t tgid, Interval iv, bool pause) {
  if (iv.second <= iv.first) return 0;
  Process& p = per_process_[tgid];
  std::uint64_t total = 0;
  // Pauses of one process never overlap each other (one collection at a time), so summing pairwise overlaps of a
  // query with each pause counts no time twice. Only intervals ending after iv starts can overlap it: with the list
  // sorted by end they are a suffix, a few entries long however full the window is.
  const auto& others = pause ? p.queries : p.pauses;
  for (auto it = others.rbegin(); it != others.rend() && it->second > iv.first; ++it) {
    std::uint64_t lo = std::max(iv.first, it->first);
    std::uint64_t hi = std::min(iv.second, it->second);
    if (hi > lo) total += hi - lo;
  }
  // Records arrive in about the order they ended (each ring in the order its calls returned): the place to keep the
  // list sorted is at or near the back.
  auto& own = pause ? p.pauses : p.queries;
  auto at = own.end();
  while (at != own.begin() && std::prev(at)->second > iv.second) --at;
  own.insert(at, iv);
  p.newest_end = std::max(p.newest_end, iv.second);
  prune(p);
  return total;
}

}  // namespace sp
