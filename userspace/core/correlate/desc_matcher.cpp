#include "core/correlate/desc_matcher.h"

#include <algorithm>

namespace sp {

void DescMatcher::add_client(const WorkerLabels& w, std::uint32_t tid, std::uint64_t start_ns, std::uint64_t end_ns,
                             const std::string& desc, std::uint64_t conn) {
  if (end_ns < start_ns) return;
  Worker& k = workers_[w];
  missed_.try_emplace(w, 0);
  auto name = k.descs.find(desc);
  if (name == k.descs.end()) name = k.descs.insert(desc).first;
  std::uint64_t seq = 0;
  if (conn) {
    Conn& c = k.conns[conn];
    seq = c.next_seq++;
    c.last_end_ns = std::max(c.last_end_ns, end_ns);
  }
  std::deque<Call>& calls = k.calls;
  const std::uint64_t max_end = calls.empty() ? end_ns : std::max(calls.back().max_end_so_far, end_ns);
  calls.push_back({tid, start_ns, end_ns, &*name, conn, seq, max_end, start_ns, end_ns});
  // The suffix minima of the calls before it that this one lowers: none or a few, as calls arrive in about the order
  // they started and ended.
  for (std::size_t i = calls.size() - 1; i-- > 0;) {
    Call& c = calls[i];
    if (c.min_start_after <= start_ns && c.min_end_after <= end_ns) break;
    c.min_start_after = std::min(c.min_start_after, start_ns);
    c.min_end_after = std::min(c.min_end_after, end_ns);
  }
}

void DescMatcher::add_server(const WorkerLabels& w, std::uint32_t backend, std::uint64_t start_ns,
                             std::uint64_t end_ns, bool lock) {
  if (end_ns < start_ns) return;
  workers_[w].pending.push_back({backend, start_ns, end_ns, lock});
}

const DescMatcher::Call* DescMatcher::match(Worker& w, const Interval& iv) {
  const Call* only = nullptr;
  const Call* paired = nullptr;
  std::size_t candidates = 0, paired_candidates = 0;
  auto pair = w.thread_of_backend.find(iv.backend);
  // The calls looked at: newest first, back to the first one that ended a grace period before the interval did
  // (calls arrive in about the order they ended, so every earlier one did too and none can contain it). Of those,
  // a candidate contains the interval. Rather than walk them all (at Synapse's rates a second of calls for every
  // statement), three bounds over the arrival order pick the range that can hold candidates, with the same result:
  //   from: calls after the last one that ended a grace period before the interval (the walk's stopping point),
  //         and from the first whose end, or an earlier call's, reaches the interval's end;
  //   to:   up to the last call that has a start at or before the interval's start, its own or a later call's.
  const auto& calls = w.calls;
  const auto stop_after = std::partition_point(calls.begin(), calls.end(), [&](const Call& c) {
    return c.min_end_after + grace_ns_ < iv.end_ns;
  });
  // Each bound is searched after the one before it: all three lie in the last second or so of calls.
  const auto from = std::partition_point(stop_after, calls.end(), [&](const Call& c) {
    return c.max_end_so_far < iv.end_ns;
  });
  const auto to = std::partition_point(from, calls.end(), [&](const Call& c) {
    return c.min_start_after <= iv.start_ns;
  });
  for (auto it = from; it < to; ++it) {
    const Call& c = *it;
    if (c.start_ns > iv.start_ns || c.end_ns < iv.end_ns) continue;
    ++candidates;
    if (!only) only = &c;
    if (pair != w.thread_of_backend.end() && c.tid == pair->second) {
      ++paired_candidates;
      if (!paired) paired = &c;
    }
  }
  if (candidates == 1) {
    w.thread_of_backend[iv.backend] = only->tid;  // learn (or follow a connection that moved to another thread)
    return only;
  }
  if (paired_candidates == 1) return paired;
  return nullptr;
}

void DescMatcher::count_missed(const WorkerLabels& labels, Worker& w, const Interval& iv, const Call* c) {
  Backend& b = w.backends[iv.backend];
  b.last_end_ns = std::max(b.last_end_ns, iv.end_ns);
  if (!c || !c->conn) {
    if (!b.counted) ++b.unmatched;
    return;
  }
  auto conn = w.conns.find(c->conn);
  if (conn == w.conns.end()) return;  // forgotten meanwhile (idle for keep_ns)
  const auto seq = static_cast<std::int64_t>(c->seq);
  if (!b.counted) {
    b.counted = true;
    // The calls between the last matched one and this, less the statements of this backend seen but not matched.
    const std::int64_t gap = seq - conn->second.last_matched - 1 - static_cast<std::int64_t>(b.unmatched);
    if (gap > 0) missed_[labels] += static_cast<std::uint64_t>(gap);
  }
  conn->second.last_matched = std::max(conn->second.last_matched, seq);
}

void DescMatcher::decide(const WorkerLabels& labels, Worker& w, const Interval& iv) {
  static const std::string kUnmatched = "unmatched";
  const Call* call = match(w, iv);
  if (!iv.lock) count_missed(labels, w, iv, call);
  const std::string& name = call ? *call->desc : kUnmatched;
  // Looked up once per worker and desc: the totals' key holds the worker's labels, a few strings to compare.
  auto cached = w.totals_of.find(name);
  if (cached == w.totals_of.end()) cached = w.totals_of.emplace(name, &totals_[{labels, name}]).first;
  DescServerTotals& t = *cached->second;
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
    // Decided in arrival order; the others keep theirs.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < w.pending.size(); ++i) {
      const Interval iv = w.pending[i];
      if (iv.end_ns > decide_before) {
        w.pending[kept++] = iv;
        continue;
      }
      decide(labels, w, iv);
    }
    w.pending.resize(kept);
    while (!w.calls.empty() && w.calls.front().end_ns < keep_after) w.calls.pop_front();
    // Connections and backends idle for keep_ns: a connection used again numbers its calls afresh (its backend,
    // counted before, is not counted again; a new backend on it finds no unseen calls before its first statement).
    std::erase_if(w.conns, [&](const auto& e) { return e.second.last_end_ns < keep_after; });
    std::erase_if(w.backends, [&](const auto& e) { return e.second.last_end_ns < keep_after; });
  }
}

void DescMatcher::forget_totals(const WorkerLabels& w) {
  erase_worker(totals_, w);
  missed_.erase(w);
  // A worker still fed under these labels points into the entries just erased.
  if (auto it = workers_.find(w); it != workers_.end()) it->second.totals_of.clear();
}

void DescMatcher::forget(const WorkerLabels& w) {
  auto it = workers_.find(w);
  if (it == workers_.end()) return;
  // Decide what is pending with the calls known now: the worker's last statements are not dropped.
  for (const Interval& iv : it->second.pending) decide(w, it->second, iv);
  workers_.erase(it);
}

}  // namespace sp
