/* Latency histogram buckets shared by the BPF programs and userspace. The kernel counts each duration into the first
 * bucket whose upper bound (inclusive, like Prometheus' `le`) holds it, so the exported buckets are exactly the
 * counted ones: no approximation across a bucket edge. The last bucket is +Inf.
 * Plain C with fixed-width types so that both clang -target bpf and the C++ side include it. */
#ifndef SP_BPF_HISTOGRAM_H
#define SP_BPF_HISTOGRAM_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* 50 us .. 10 s: GC pauses and query latencies. */
#define SP_LAT_BOUNDS 17
#define SP_LAT_BUCKETS (SP_LAT_BOUNDS + 1)
#define SP_LAT_BOUNDS_NS                                                                                   \
  {                                                                                                        \
    50000ULL, 100000ULL, 250000ULL, 500000ULL, 1000000ULL, 2500000ULL, 5000000ULL, 10000000ULL, 25000000ULL, \
        50000000ULL, 100000000ULL, 250000000ULL, 500000000ULL, 1000000000ULL, 2500000000ULL, 5000000000ULL,  \
        10000000000ULL                                                                                     \
  }

/* 10 us .. 10 s: block I/O queue and device times. */
#define SP_IO_BOUNDS 19
#define SP_IO_BUCKETS (SP_IO_BOUNDS + 1)
#define SP_IO_BOUNDS_NS                                                                                      \
  {                                                                                                          \
    10000ULL, 25000ULL, 50000ULL, 100000ULL, 250000ULL, 500000ULL, 1000000ULL, 2500000ULL, 5000000ULL,       \
        10000000ULL, 25000000ULL, 50000000ULL, 100000000ULL, 250000000ULL, 500000000ULL, 1000000000ULL,      \
        2500000000ULL, 5000000000ULL, 10000000000ULL                                                         \
  }

#endif
