#include "core/correlate/correlator.h"

#include <algorithm>
#include <limits>

namespace sp {

namespace {

// time_share is exported once the span it covers is at least this long: a share of a few milliseconds says nothing.
constexpr std::uint64_t kMinShareSpanNs = 1'000'000'000ULL;
// Gaps closed per coarsening step start here and double: a microsecond is below the precision anyone reads a
// share with, and doubling reaches any rate within a few dozen steps.
constexpr std::uint64_t kFirstBridgeNs = 1'000;

// Sums the `_sum` samples of a histogram family (all label sets), or nullopt without any.
std::optional<double> histogram_sum(const std::vector<prom::Family>& families, const std::string& name) {
  std::optional<double> total;
  const std::string sum_name = name + "_sum";
  for (const auto& f : families) {
    if (f.name != name) continue;
    for (const auto& s : f.samples) {
      if (s.name != sum_name || !(s.value >= 0) || s.value == std::numeric_limits<double>::infinity()) continue;
      total = total.value_or(0) + s.value;
    }
  }
  return total;
}

}  // namespace

void IntervalUnion::add(std::uint64_t start, std::uint64_t end) {
  if (end <= start) return;
  const std::uint64_t reach_lo = start > min_gap_ ? start - min_gap_ : 0;
  const std::uint64_t reach_hi = end + min_gap_;
  // First interval that ends at or after reach_lo: the first that may touch the new one.
  auto first = std::lower_bound(v_.begin(), v_.end(), reach_lo,
                                [](const auto& iv, std::uint64_t t) { return iv.second < t; });
  auto last = first;
  std::uint64_t lo = start, hi = end, old_covered = 0, overlap = 0;
  for (; last != v_.end() && last->first <= reach_hi; ++last) {
    lo = std::min(lo, last->first);
    hi = std::max(hi, last->second);
    old_covered += last->second - last->first;
    std::uint64_t olo = std::max(start, last->first), ohi = std::min(end, last->second);
    if (ohi > olo) overlap += ohi - olo;
  }
  const std::uint64_t real = old_covered + (end - start) - overlap;
  bridged_ns_ += (hi - lo) - real;
  if (first == last) {
    v_.insert(first, {lo, hi});
  } else {
    *first = {lo, hi};
    v_.erase(first + 1, last);
  }
  if (v_.size() > max_) coarsen();
}

void IntervalUnion::coarsen() {
  // Close ever wider gaps until at most half the limit is used, so that this O(n) pass stays rare.
  while (v_.size() > max_ / 2) {
    min_gap_ = min_gap_ == 0 ? kFirstBridgeNs : min_gap_ * 2;
    std::size_t out = 0;
    for (std::size_t i = 1; i < v_.size(); ++i) {
      if (v_[i].first - v_[out].second < min_gap_) {
        bridged_ns_ += v_[i].first - v_[out].second;
        v_[out].second = v_[i].second;
      } else {
        v_[++out] = v_[i];
      }
    }
    v_.resize(out + 1);
  }
}

void IntervalUnion::forget_before(std::uint64_t t) {
  auto keep = std::upper_bound(v_.begin(), v_.end(), t, [](std::uint64_t x, const auto& iv) { return x < iv.second; });
  v_.erase(v_.begin(), keep);
  if (v_.size() < max_ / 4) min_gap_ = 0;  // the burst has left the window: back to exact
}

std::uint64_t IntervalUnion::covered(std::uint64_t from, std::uint64_t to) const {
  std::uint64_t total = 0;
  auto it = std::upper_bound(v_.begin(), v_.end(), from, [](std::uint64_t x, const auto& iv) { return x < iv.second; });
  for (; it != v_.end() && it->first < to; ++it) {
    std::uint64_t lo = std::max(from, it->first), hi = std::min(to, it->second);
    if (hi > lo) total += hi - lo;
  }
  return total;
}

SynapseCounters synapse_counters(const std::vector<prom::Family>& families) {
  SynapseCounters c;
  c.query_time_sum = histogram_sum(families, "synapse_storage_query_time");
  c.gc_time_sum = histogram_sum(families, "python_gc_time");
  return c;
}

const char* cause_name(Cause c) {
  switch (c) {
    case Cause::Gc: return "gc";
    case Cause::DbClient: return "db_client";
    case Cause::DbServer: return "db_server";
    case Cause::Disk: return "disk";
  }
  return "unknown";
}

Correlator::Worker& Correlator::worker(const WorkerLabels& w, std::uint64_t seen_ns) {
  auto it = workers_.find(w);
  if (it != workers_.end()) return it->second;
  Worker& n = workers_[w];
  // Watched from the later of the last tick and the moment given (watch(): when a scan found the worker).
  n.first_seen_ns = std::max(now_ns_, seen_ns);
  const std::size_t m = options_.max_intervals;
  n.busy = {IntervalUnion(m), IntervalUnion(m), IntervalUnion(m), IntervalUnion(m)};
  return n;
}

void Correlator::add_busy(const WorkerLabels& w, Cause c, std::uint64_t start_ns, std::uint64_t end_ns) {
  if (end_ns <= start_ns) return;
  Worker& k = worker(w, start_ns);
  // Before the worker was first seen nothing of it was watched; clamp so the share's span and its numerator agree.
  k.busy[static_cast<std::size_t>(c)].add(std::max(start_ns, k.first_seen_ns), end_ns);
}

void Correlator::account(const WorkerLabels& w, std::uint64_t end_ns, Totals add) {
  Worker& k = workers_[w];
  k.running.query_ns += add.query_ns;
  k.running.gc_ns += add.gc_ns;
  k.recent.push_back({end_ns, add});
}

void Correlator::add_gc(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns) {
  if (end_ns <= start_ns) return;
  add_busy(w, Cause::Gc, start_ns, end_ns);
  account(w, end_ns, {0, end_ns - start_ns});
}

void Correlator::add_query(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns, bool in_query_time) {
  if (end_ns <= start_ns) return;
  add_busy(w, Cause::DbClient, start_ns, end_ns);
  if (in_query_time) account(w, end_ns, {end_ns - start_ns, 0});
}

void Correlator::add_server(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns) {
  add_busy(w, Cause::DbServer, start_ns, end_ns);
}

void Correlator::add_disk(const WorkerLabels& w, std::uint64_t start_ns, std::uint64_t end_ns) {
  add_busy(w, Cause::Disk, start_ns, end_ns);
}

void Correlator::watch(const WorkerLabels& w, std::uint64_t now_ns) { worker(w, now_ns); }

void Correlator::tick(std::uint64_t now_ns) {
  now_ns_ = std::max(now_ns_, now_ns);
  const std::uint64_t horizon = now_ns_ > options_.window_ns ? now_ns_ - options_.window_ns : 0;
  const std::uint64_t history_horizon = now_ns_ > options_.history_ns ? now_ns_ - options_.history_ns : 0;
  for (auto& [labels, w] : workers_) {
    // Only from the front: an event behind a newer one stays a little longer, which costs nothing but memory.
    while (!w.recent.empty() && w.recent.front().end_ns < history_horizon) w.recent.pop_front();
    for (auto& u : w.busy) u.forget_before(horizon);
    while (!w.pending.empty() && w.pending.front().at_ns <= now_ns_) {
      ScrapePoint p = std::move(w.pending.front());
      w.pending.pop_front();
      settle(w, std::move(p));
    }
  }
}

void Correlator::add_scrape(const WorkerLabels& labels, std::uint64_t at_ns, const SynapseCounters& c) {
  Worker& w = worker(labels, at_ns);
  ScrapePoint p;
  p.at_ns = at_ns;
  p.counters = c;
  if (!w.scrapes.empty() && at_ns <= w.scrapes.back().at_ns) return;  // out of order: the newer one is in
  if (at_ns > now_ns_) {
    w.pending.push_back(std::move(p));
    return;
  }
  settle(w, std::move(p));
}

Correlator::Totals Correlator::totals_at(const Worker& w, std::uint64_t at_ns) {
  Totals t = w.running;
  for (const Recent& r : w.recent) {
    if (r.end_ns <= at_ns) continue;
    t.query_ns -= r.add.query_ns;
    t.gc_ns -= r.add.gc_ns;
  }
  return t;
}

void Correlator::settle(Worker& w, ScrapePoint p) {
  p.probes = totals_at(w, p.at_ns);
  if (p.counters.query_time_sum) {
    const ScrapePoint* prev = nullptr;
    for (auto it = w.scrapes.rbegin(); it != w.scrapes.rend() && !prev; ++it) {
      if (it->counters.query_time_sum) prev = &*it;
    }
    if (!prev || !w.overhead_raw) {
      w.overhead_raw = 0;  // the baseline: from here on both sides are compared
    } else {
      const double s = *p.counters.query_time_sum, s_prev = *prev->counters.query_time_sum;
      // A decrease is a restart of the worker (fresh counters): its whole value is new since then.
      const double synapse = s >= s_prev ? s - s_prev : s;
      const double probes = (static_cast<double>(p.probes.query_ns) - static_cast<double>(prev->probes.query_ns)) / 1e9;
      *w.overhead_raw += synapse - probes;
      w.overhead_exported = std::max(w.overhead_exported, *w.overhead_raw);
    }
  }
  w.scrapes.push_back(std::move(p));
  // Keep one point at or before the window's start, so the window is covered whole.
  const std::uint64_t newest = w.scrapes.back().at_ns;
  while (w.scrapes.size() > 2 && w.scrapes[1].at_ns + options_.window_ns <= newest) w.scrapes.pop_front();
}

std::map<WorkerLabels, WorkerCorrelation> Correlator::snapshot() const {
  std::map<WorkerLabels, WorkerCorrelation> out;
  for (const auto& [labels, w] : workers_) {
    WorkerCorrelation c;
    if (w.overhead_raw) c.python_overhead_seconds = w.overhead_exported;

    // GC coverage from the newest run of scrapes with python_gc_time and no counter reset.
    if (!w.scrapes.empty() && w.scrapes.back().counters.gc_time_sum) {
      std::size_t k = w.scrapes.size() - 1;
      while (k > 0 && w.scrapes[k - 1].counters.gc_time_sum &&
             *w.scrapes[k - 1].counters.gc_time_sum <= *w.scrapes[k].counters.gc_time_sum) {
        --k;
      }
      const ScrapePoint& first = w.scrapes[k];
      const ScrapePoint& last = w.scrapes.back();
      if (last.at_ns > first.at_ns) {
        const double synapse = *last.counters.gc_time_sum - *first.counters.gc_time_sum;
        const double probes = (static_cast<double>(last.probes.gc_ns) - static_cast<double>(first.probes.gc_ns)) / 1e9;
        if (synapse > 0) {
          c.gc_coverage_ratio = probes / synapse;
        } else if (probes > 0) {
          c.gc_coverage_ratio = std::numeric_limits<double>::infinity();
        }
      }
    }

    const std::uint64_t window_start =
        std::max(w.first_seen_ns, now_ns_ > options_.window_ns ? now_ns_ - options_.window_ns : 0);
    if (now_ns_ >= window_start + kMinShareSpanNs) {
      std::array<double, kCauses> shares{};
      const double span = static_cast<double>(now_ns_ - window_start);
      for (std::size_t i = 0; i < kCauses; ++i) {
        shares[i] = static_cast<double>(w.busy[i].covered(window_start, now_ns_)) / span;
      }
      c.time_share = shares;
      c.window_seconds = span / 1e9;
    }
    out.emplace(labels, std::move(c));
  }
  return out;
}

}  // namespace sp
