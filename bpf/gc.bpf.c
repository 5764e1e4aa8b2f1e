// Python garbage-collection pauses, per process and generation.
//
// Three ways in, chosen per process by userspace (see userspace/core/python/gc_locator.h): the USDT probes
// python:gc__start/gc__done, or an uprobe + uretprobe pair on the C function that runs a collection (found by symbol
// in unstripped builds, or through the gc module's PyMethodDef table in stripped ones). All of them meet in the same
// start/end logic: a per-thread start record, an in-kernel histogram per (process, generation) that never loses a
// count, and a lean per-pause event through the ring buffer whose drops are counted.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "bpf_common.h"
#include "gc.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct gc_start {
  __u64 start_ns;
  __s32 generation;
  __u32 depth; /* nested gc.collect() from a finalizer: only the outermost call is a pause */
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32); /* TGID in the agent's PID namespace (sp_current_pid_tgid) */
  __type(value, struct gc_target);
} gc_targets SEC(".maps");

// The collection in flight on a thread (depth 0: none). Task-local storage, like the libpq probe's calls: after a
// thread's first collection, finding its slot takes no lock (a hash update and delete per pause take two), and the
// kernel frees it with the thread, so a thread that dies mid-collection leaks nothing.
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct gc_start);
} gc_starts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, struct gc_hist_key);
  __type(value, struct gc_hist);
} gc_hist SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, SP_GC_RING_BYTES);
} gc_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SP_GC_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} gc_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx) { sp_percpu_inc(&gc_stats, idx); }

// Reads a small Python int (up to two 30-bit digits) from the traced process; SP_GC_COLLECTED_UNKNOWN if unreadable.
static __always_inline __s64 read_pylong(const void *obj, __u32 layout) {
  __s64 tag = 0;
  __u32 digits[2] = {0, 0};
  if (!obj || bpf_probe_read_user(&tag, sizeof tag, (const char *)obj + 16)) return SP_GC_COLLECTED_UNKNOWN;
  __s64 ndigits;
  int negative;
  if (layout == SP_PYLONG_LV_TAG) {
    __u64 sign = (__u64)tag & 3;
    if (sign == 1) return 0;
    ndigits = (__s64)((__u64)tag >> 3);
    negative = sign == 2;
  } else {
    if (tag == 0) return 0;
    negative = tag < 0;
    ndigits = negative ? -tag : tag;
  }
  if (ndigits < 1 || ndigits > 2) return SP_GC_COLLECTED_UNKNOWN;
  if (bpf_probe_read_user(digits, ndigits * sizeof(__u32), (const char *)obj + 24)) return SP_GC_COLLECTED_UNKNOWN;
  __s64 value = (__s64)digits[0] | ((__s64)digits[1] << 30);
  return negative ? -value : value;
}

static __always_inline struct gc_target *target(void) {
  __u32 tgid = sp_current_pid_tgid() >> 32;
  return bpf_map_lookup_elem(&gc_targets, &tgid);
}

static __always_inline void gc_begin(__s32 generation) {
  struct gc_start *cur = sp_task_slot(&gc_starts, true);
  if (!cur) return;
  if (cur->depth) {
    cur->depth++;
    return;
  }
  cur->start_ns = bpf_ktime_get_ns();
  cur->generation = generation;
  cur->depth = 1;
}

static __always_inline void gc_end(__s64 collected) {
  __u64 now = bpf_ktime_get_ns();
  __u64 id = sp_current_pid_tgid();
  struct gc_start *s = sp_task_slot(&gc_starts, false);
  if (!s || !s->depth) {
    if (target()) stat_inc(SP_GC_STAT_UNMATCHED);  // attached in the middle of a collection
    return;
  }
  if (--s->depth) return;
  __u64 start = s->start_ns;
  __s32 generation = s->generation;

  __u64 dur = now - start;
  struct gc_hist_key key = {.tgid = id >> 32, .generation = generation};
  struct gc_hist *h = bpf_map_lookup_elem(&gc_hist, &key);
  if (!h) {
    struct gc_hist zero = {};
    bpf_map_update_elem(&gc_hist, &key, &zero, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&gc_hist, &key);
    if (!h) return;
  }
  __u32 b = sp_lat_bucket(dur);
  if (b < SP_LAT_BUCKETS) __sync_fetch_and_add(&h->buckets[b], 1);
  __sync_fetch_and_add(&h->count, 1);
  __sync_fetch_and_add(&h->sum_ns, dur);
  if (collected >= 0)
    __sync_fetch_and_add(&h->collected, (__u64)collected);
  else
    __sync_fetch_and_add(&h->collected_unknown, 1);

  struct gc_event *e = bpf_ringbuf_reserve(&gc_events, sizeof *e, 0);
  if (!e) {
    stat_inc(SP_GC_STAT_EVENTS_LOST);
    return;
  }
  e->tgid = id >> 32;
  e->tid = (__u32)id;
  e->start_ns = start;
  e->end_ns = now;
  e->collected = collected;
  e->generation = generation;
  e->_pad = 0;
  // No wakeup per record (it would double the cost of every pause): see sp_ring_wake().
  bpf_ringbuf_submit(e, sp_ring_flags_reserved(&gc_events, SP_GC_RING_BYTES, sizeof *e));
}

SEC("usdt")
int BPF_USDT(gc_usdt_start, int generation) {
  if (!target()) return 0;
  gc_begin(generation);
  return 0;
}

SEC("usdt")
int BPF_USDT(gc_usdt_done, long collected) {
  gc_end(collected);  // a collection in flight on this thread was started by a target: no second lookup
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(gc_func_entry, void *arg1, void *arg2, long arg3, void *arg4) {
  struct gc_target *t = target();
  if (!t) return 0;
  __s32 generation = SP_GC_GEN_UNKNOWN;
  if (t->gen_source == SP_GC_GEN_ARG2_INT) {
    // 3.13+ passes -1 (GENERATION_AUTO) when the collector picks the generation itself: unknown.
    generation = (__s32)(long)arg2;
  } else if (t->gen_source == SP_GC_GEN_FASTCALL) {
    // gc_collect(module, args, nargs, kwnames): generation is args[0] whether given positionally or as the only
    // keyword gc.collect() accepts (vectorcall puts keyword values after the positional ones); the default is 2.
    long nargs = arg3 & ~(1L << 63); /* PY_VECTORCALL_ARGUMENTS_OFFSET */
    if (nargs >= 1 || arg4) {
      void *obj = 0;
      if (!bpf_probe_read_user(&obj, sizeof obj, arg2)) generation = (__s32)read_pylong(obj, t->long_layout);
    } else {
      generation = 2;
    }
  }
  if (generation < 0 || generation > 2) generation = SP_GC_GEN_UNKNOWN;
  gc_begin(generation);
  return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(gc_func_return, long ret) {
  struct gc_target *t = target();
  if (!t) return 0;
  __s64 collected = SP_GC_COLLECTED_UNKNOWN;
  if (t->ret_source == SP_GC_RET_INT)
    collected = ret;
  else if (t->ret_source == SP_GC_RET_PYLONG)
    collected = read_pylong((const void *)ret, t->long_layout);
  gc_end(collected);
  return 0;
}
