#include "core/correlate/desc_matcher.h"

namespace sp {

void DescMatcher::add_client(const WorkerLabels& w, std::uint32_t tid, std::uint64_t start_ns, std::uint64_t end_ns,
                             const std::string& desc) {
  if (end_ns < start_ns) return;
  workers_[w].calls.push_back({tid, start_ns, end_ns, desc});
}

void DescMatcher::add_server(const WorkerLabels& w, std::uint32_t backend, std::uint64_t start_ns,
                             std::uint64_t end_ns, bool lock) {
  if (end_ns < start_ns) return;
  workers_[w].pending.push_back({backend, start_ns, end_ns, lock});
}

std::optional<std::string> DescMatcher::match(Worker& w, const Interval& iv) {
  const Call* only = nullptr;
  const Call* paired = nullptr;
  std::size_t candidates = 0, paired_candidates = 0;
  auto pair = w.thread_of_backend.find(iv.backend);
  // Newest first; calls arrive in about the order they ended (drained every 250 ms), so once one ended a grace period
  // before the interval did, every earlier one did too and none can contain it.
  for (auto it = w.calls.rbegin(); it != w.calls.rend(); ++it) {
    const Call& c = *it;
    if (c.end_ns + grace_ns_ < iv.end_ns) break;
    if (c.start_ns > iv.start_ns || c.end_ns < iv.end_ns) continue;
    ++candidates;
    only = &c;
    if (pair != w.thread_of_backend.end() && c.tid == pair->second) {
      ++paired_candidates;
      paired = &c;
    }
  }
  if (candidates == 1) {
    w.thread_of_backend[iv.backend] = only->tid;  // learn (or follow a connection that moved to another thread)
    return only->desc;
  }
  if (paired_candidates == 1) return paired->desc;
  return std::nullopt;
}

void DescMatcher::decide(const WorkerLabels& labels, Worker& w, const Interval& iv) {
  auto desc = match(w, iv);
  DescServerTotals& t = totals_[{labels, desc ? *desc : std::string("unmatched")}];
  const std::uint64_t ns = iv.end_ns - iv.start_ns;
  if (iv.lock) {
    ++t.lock_waits;
    t.lock_wait_ns += ns;
  } else {
    ++t.statements;
    t.statement_ns += ns;
  }
}

void DescMatcher::settle(std::uint64_t now_ns) {
  const std::uint64_t decide_before = now_ns > grace_ns_ ? now_ns - grace_ns_ : 0;
  const std::uint64_t keep_after = now_ns > keep_ns_ ? now_ns - keep_ns_ : 0;
  for (auto& [labels, w] : workers_) {
    std::deque<Interval> later;
    for (const Interval& iv : w.pending) {
      if (iv.end_ns > decide_before) {
        later.push_back(iv);
        continue;
      }
      decide(labels, w, iv);
    }
    w.pending = std::move(later);
    while (!w.calls.empty() && w.calls.front().end_ns < keep_after) w.calls.pop_front();
  }
}

void DescMatcher::forget(const WorkerLabels& w) {
  auto it = workers_.find(w);
  if (it == workers_.end()) return;
  // Decide what is pending with the calls known now: the worker's last statements are not dropped.
  for (const Interval& iv : it->second.pending) decide(w, it->second, iv);
  workers_.erase(it);
}

}  // namespace sp
