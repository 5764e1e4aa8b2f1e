#include "core/record/aggregates.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/record/summary.h"

namespace sp {

namespace {
constexpr double kBucketsPerOctave = 32;
constexpr double kFloorSeconds = 1e-9;  // durations below a nanosecond share the lowest bucket
}  // namespace

int DurationStats::bucket_of(double seconds) {
  return static_cast<int>(std::floor(std::log2(std::max(seconds, kFloorSeconds) / kFloorSeconds) * kBucketsPerOctave));
}

double DurationStats::value_of(int bucket) {
  return kFloorSeconds * std::exp2((bucket + 0.5) / kBucketsPerOctave);
}

void DurationStats::add(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // NaN or negative: a clipped pair
  min_ = count_ == 0 ? seconds : std::min(min_, seconds);
  max_ = count_ == 0 ? seconds : std::max(max_, seconds);
  ++count_;
  total_ += seconds;
  if (count_ <= kExact) {
    exact_.push_back(seconds);
    return;
  }
  if (!exact_.empty()) spill();
  bump(bucket_of(seconds));
}

void DurationStats::bump(int b) {
  if (counts_.empty()) {
    lo_ = b;
    counts_.assign(1, 0);
  } else if (b < lo_) {
    counts_.insert(counts_.begin(), static_cast<std::size_t>(lo_ - b), 0);
    lo_ = b;
  } else if (static_cast<std::size_t>(b - lo_) >= counts_.size()) {
    counts_.resize(static_cast<std::size_t>(b - lo_) + 1, 0);
  }
  ++counts_[static_cast<std::size_t>(b - lo_)];
}

void DurationStats::spill() {
  for (double v : exact_) bump(bucket_of(v));
  std::vector<double>().swap(exact_);
}

double DurationStats::percentile(double p) const {
  if (count_ == 0) return 0;
  const auto k = std::max<std::size_t>(
      1, std::min(count_, static_cast<std::size_t>(std::ceil(p * static_cast<double>(count_)))));
  if (!exact_.empty()) {
    std::vector<double> v = exact_;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k - 1), v.end());
    return v[k - 1];
  }
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= k) return std::clamp(value_of(lo_ + static_cast<int>(i)), min_, max_);
  }
  return max_;
}

Distribution DurationStats::distribution() const {
  Distribution d;
  d.count = count_;
  if (count_ == 0) return d;
  d.total_s = total_;
  d.mean_s = total_ / static_cast<double>(count_);
  d.p50_s = percentile(0.50);
  d.p99_s = percentile(0.99);
  d.max_s = max_;
  return d;
}

std::vector<std::pair<double, std::uint64_t>> DurationStats::buckets() const {
  std::vector<std::pair<double, std::uint64_t>> out;
  if (!exact_.empty()) {
    for (double v : exact_) out.emplace_back(v, 1);
    std::sort(out.begin(), out.end());
    return out;
  }
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i]) out.emplace_back(std::clamp(value_of(lo_ + static_cast<int>(i)), min_, max_), counts_[i]);
  }
  return out;
}

CauseTimeline::CauseTimeline(std::size_t causes, std::uint64_t from_ns, std::uint64_t lag_ns)
    : unions_(causes, IntervalUnion(65'536)), watermark_(from_ns), lag_ns_(lag_ns) {
  settled_.union_ns.assign(causes, 0);
  settled_.exclusive_ns.assign(causes, 0);
}

void CauseTimeline::add(std::size_t cause, std::uint64_t start_ns, std::uint64_t end_ns) {
  if (cause >= unions_.size()) return;
  start_ns = std::max(start_ns, watermark_);
  if (end_ns <= start_ns) return;
  unions_[cause].add(start_ns, end_ns);
  newest_end_ = std::max(newest_end_, end_ns);
  // Settle in steps of one lag, so that the sweep's cost is shared by a lag's worth of events.
  if (newest_end_ > watermark_ + 2 * lag_ns_) {
    const std::uint64_t to = newest_end_ - lag_ns_;
    sweep(watermark_, to, settled_);
    for (auto& u : unions_) u.forget_before(to);
    watermark_ = to;
  }
}

void CauseTimeline::sweep(std::uint64_t from, std::uint64_t to, Totals& into) const {
  if (to <= from) return;
  // Boundaries of every cause's intervals inside [from, to): +1 at a start, -1 at an end (each union is disjoint,
  // so a cause is active 0 or 1 times).
  std::vector<std::tuple<std::uint64_t, int, std::size_t>> edges;
  for (std::size_t c = 0; c < unions_.size(); ++c) {
    for (const auto& [lo, hi] : unions_[c].intervals()) {
      const std::uint64_t a = std::max(lo, from), b = std::min(hi, to);
      if (b <= a) continue;
      edges.emplace_back(a, 1, c);
      edges.emplace_back(b, -1, c);
    }
  }
  std::sort(edges.begin(), edges.end());
  std::vector<int> active(unions_.size(), 0);
  std::uint64_t prev = from;
  for (const auto& [t, delta, c] : edges) {
    if (t > prev) {
      bool first = true;
      for (std::size_t k = 0; k < active.size(); ++k) {
        if (!active[k]) continue;
        into.union_ns[k] += t - prev;
        if (first) into.exclusive_ns[k] += t - prev;
        first = false;
      }
      prev = t;
    }
    active[c] += delta;
  }
}

CauseTimeline::Totals CauseTimeline::totals(std::uint64_t to_ns) const {
  Totals t = settled_;
  sweep(watermark_, to_ns, t);
  return t;
}

std::size_t CauseTimeline::held_intervals() const {
  std::size_t n = 0;
  for (const auto& u : unions_) n += u.size();
  return n;
}

void SlowestMoments::push(std::uint64_t duration_ns, SlowMoment m) {
  auto greater = [](const auto& a, const auto& b) { return a.first > b.first; };
  if (heap_.size() >= n_) {
    std::pop_heap(heap_.begin(), heap_.end(), greater);
    heap_.pop_back();
  }
  heap_.emplace_back(duration_ns, std::move(m));
  std::push_heap(heap_.begin(), heap_.end(), greater);
}

std::vector<SlowMoment> SlowestMoments::longest_first() const {
  auto sorted = heap_;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second.start_ns < b.second.start_ns;
  });
  std::vector<SlowMoment> out;
  for (auto& [d, m] : sorted) out.push_back(std::move(m));
  return out;
}

}  // namespace sp
