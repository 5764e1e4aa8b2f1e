// Histograms with the exact bucket bounds the BPF programs count into (bpf/histogram.h): latencies (GC, queries:
// 50 us .. 10 s) and block I/O times (10 us .. 10 s), with Prometheus' inclusive upper bounds.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "histogram.h"  // bpf/histogram.h: SP_LAT_BOUNDS_NS, SP_IO_BOUNDS_NS

namespace sp {

inline constexpr std::array<std::uint64_t, SP_LAT_BOUNDS> kLatencyBoundsNs = SP_LAT_BOUNDS_NS;
inline constexpr std::array<std::uint64_t, SP_IO_BOUNDS> kIoBoundsNs = SP_IO_BOUNDS_NS;

template <std::size_t NBounds, const std::array<std::uint64_t, NBounds>* Bounds>
struct BucketHistogram {
  static constexpr const std::array<std::uint64_t, NBounds>& bounds() { return *Bounds; }

  std::array<std::uint64_t, NBounds + 1> buckets{};  // per bucket (not cumulative); last is +Inf
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;

  void add(const BucketHistogram& o) {
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
    count += o.count;
    sum_ns += o.sum_ns;
  }
  // Index of the bucket a duration falls in (same rule as the kernel: the first bound >= ns).
  static std::size_t bucket_of(std::uint64_t ns) {
    for (std::size_t i = 0; i < NBounds; ++i) {
      if (ns <= (*Bounds)[i]) return i;
    }
    return NBounds;
  }
  void record(std::uint64_t ns) {
    ++buckets[bucket_of(ns)];
    ++count;
    sum_ns += ns;
  }
  // From the kernel's per-bucket counts (__u64 is unsigned long long, std::uint64_t unsigned long: any integer works).
  template <typename U>
  static BucketHistogram from_kernel(const U* per_bucket, std::uint64_t count, std::uint64_t sum_ns) {
    BucketHistogram h;
    for (std::size_t i = 0; i < h.buckets.size(); ++i) h.buckets[i] = per_bucket[i];
    h.count = count;
    h.sum_ns = sum_ns;
    return h;
  }
};

using LatencyHistogram = BucketHistogram<SP_LAT_BOUNDS, &kLatencyBoundsNs>;
using IoHistogram = BucketHistogram<SP_IO_BOUNDS, &kIoBoundsNs>;

}  // namespace sp
