/* Helpers shared by the BPF programs (BPF side only: include after vmlinux.h and bpf_helpers.h). */
#ifndef SP_BPF_COMMON_H
#define SP_BPF_COMMON_H

#include "histogram.h"

static const __u64 sp_lat_bounds[SP_LAT_BOUNDS] = SP_LAT_BOUNDS_NS;

/* The latency bucket of a duration: the first bound >= ns (inclusive, like Prometheus' `le`), else +Inf. */
static __always_inline __u32 sp_lat_bucket(__u64 ns) {
  __u32 i;
  for (i = 0; i < SP_LAT_BOUNDS; i++) {
    if (ns <= sp_lat_bounds[i]) return i;
  }
  return SP_LAT_BOUNDS;
}

/* Adds one to slot `idx` of a per-CPU array of __u64 counters. */
static __always_inline void sp_percpu_inc(void *map, __u32 idx) {
  __u64 *v = bpf_map_lookup_elem(map, &idx);
  if (v) *v += 1;
}

#endif
