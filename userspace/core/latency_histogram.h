// Latency histograms with the exact bucket bounds the BPF programs count into (bpf/histogram.h), and conversion to
// Prometheus' cumulative form.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "histogram.h"  // bpf/histogram.h: SP_LAT_BOUNDS_NS

namespace sp {

inline constexpr std::array<std::uint64_t, SP_LAT_BOUNDS> kLatencyBoundsNs = SP_LAT_BOUNDS_NS;

struct LatencyHistogram {
  std::array<std::uint64_t, SP_LAT_BUCKETS> buckets{};  // per bucket (not cumulative); last is +Inf
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;

  void add(const LatencyHistogram& o) {
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
    count += o.count;
    sum_ns += o.sum_ns;
  }
  // Index of the bucket a duration falls in (same rule as the kernel: first bound >= ns).
  static std::size_t bucket_of(std::uint64_t ns) {
    for (std::size_t i = 0; i < kLatencyBoundsNs.size(); ++i) {
      if (ns <= kLatencyBoundsNs[i]) return i;
    }
    return kLatencyBoundsNs.size();
  }
  void record(std::uint64_t ns) {
    ++buckets[bucket_of(ns)];
    ++count;
    sum_ns += ns;
  }
};

}  // namespace sp
