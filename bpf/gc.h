/* Python GC pauses: what bpf/gc.bpf.c and userspace/probes/gc_probe.cpp share.
 * Fixed-width fields, explicit padding, no pointers: userspace static_asserts the sizes. */
#ifndef SP_BPF_GC_H
#define SP_BPF_GC_H

#include "histogram.h"

/* Where the generation comes from at the start of a collection. */
enum sp_gc_gen_source {
  SP_GC_GEN_USDT = 0,          /* python:gc__start(int generation) */
  SP_GC_GEN_ARG2_INT = 1,      /* C function whose 2nd argument is `int generation` (collect, gc_collect_main) */
  SP_GC_GEN_FASTCALL = 2,      /* gc.collect()'s clinic wrapper: (module, PyObject *const *args, nargs, kwnames) */
  SP_GC_GEN_NONE = 3,          /* not readable: reported as unknown */
};

/* Where the collected count comes from at the end. */
enum sp_gc_ret_source {
  SP_GC_RET_USDT = 0,          /* python:gc__done(long collected) */
  SP_GC_RET_INT = 1,           /* the function returns the count as a C integer */
  SP_GC_RET_PYLONG = 2,        /* the function returns a PyLong object (gc.collect()) */
  SP_GC_RET_NONE = 3,
};

/* PyLong memory layout, for reading small ints out of the traced process. */
enum sp_pylong_layout {
  SP_PYLONG_SIZE_SIGNED = 0,   /* <= 3.11: ob_size at 16 carries sign and digit count, digits at 24 */
  SP_PYLONG_LV_TAG = 1,        /* >= 3.12: lv_tag at 16 (sign in bits 0-1, ndigits = tag >> 3), digits at 24 */
};

#define SP_GC_GEN_UNKNOWN (-1)
#define SP_GC_COLLECTED_UNKNOWN (-1)

/* The per-pause ring buffer (bytes, a power of two): 1 365 records of 48 bytes; the agent is woken at each quarter
 * filled (sp_ring_wake in bpf_common.h). */
#define SP_GC_RING_BYTES (64 * 1024)

/* Per traced process (key: its TGID as the agent sees it, see sp_current_pid_tgid): how to read this process's
 * interpreter. */
struct gc_target {
  __u32 gen_source;
  __u32 ret_source;
  __u32 long_layout;
  __u32 _pad;
};

struct gc_hist_key {
  __u32 tgid;
  __s32 generation; /* 0..2, or SP_GC_GEN_UNKNOWN */
};

struct gc_hist {
  __u64 buckets[SP_LAT_BUCKETS]; /* per bucket, not cumulative */
  __u64 count;
  __u64 sum_ns;
  __u64 collected;            /* sum of known collected counts */
  __u64 collected_unknown;    /* collections whose count could not be read */
};

/* One collection, through the ring buffer (for correlation and recording). */
struct gc_event {
  __u32 tgid;
  __u32 tid;
  __u64 start_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
  __u64 end_ns;
  __s64 collected;
  __s32 generation;
  __u32 _pad;
};

/* Indices of the gc_stats array. */
enum sp_gc_stat {
  SP_GC_STAT_EVENTS_LOST = 0, /* ring buffer full: the histogram still counted it */
  SP_GC_STAT_UNMATCHED = 1,   /* an end without a start (attached mid-collection) */
  SP_GC_STAT_MAX = 2,
};

#endif
