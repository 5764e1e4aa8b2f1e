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

/* The PID namespace whose ids the agent uses (its own: the one its /proc shows and the attach API takes), set by
 * userspace between open and load from /proc/self/ns/pid. sp_pidns_ino == 0 means the initial namespace (host mode,
 * hostPID): the kernel's global ids are the agent's ids and the plain helper is used. */
const volatile __u64 sp_pidns_dev = 0;
const volatile __u64 sp_pidns_ino = 0;

/* bpf_get_current_pid_tgid() as the agent sees it: in a sidecar (the agent in the pod's PID namespace) the host's
 * TGID would never match a PID read from /proc. 0 for a task outside that namespace (a host task, or one in a nested
 * namespace below it): such a task is never a target, and its I/O is nobody's. */
static __always_inline __u64 sp_current_pid_tgid(void) {
  if (!sp_pidns_ino) return bpf_get_current_pid_tgid();
  struct bpf_pidns_info ns = {};
  if (bpf_get_ns_current_pid_tgid(sp_pidns_dev, sp_pidns_ino, &ns, sizeof ns)) return 0;
  return ((__u64)ns.tgid << 32) | ns.pid;
}

/* Adds one to slot `idx` of a per-CPU array of __u64 counters. */
static __always_inline void sp_percpu_inc(void *map, __u32 idx) {
  __u64 *v = bpf_map_lookup_elem(map, &idx);
  if (v) *v += 1;
}

/* The calling thread's slot in a BPF_MAP_TYPE_TASK_STORAGE map (a pointer to the map's value type), NULL when it has
 * none. With `create` a missing slot is made, zeroed; the result is still checked (the kernel can fail to allocate). */
static __always_inline void *sp_task_slot(void *map, bool create) {
  return bpf_task_storage_get(map, bpf_get_current_task_btf(), 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Wakeup flags for ring-buffer records. The agent drains its rings on a 250 ms timer: no wakeup per record (each
 * would cost the producer an irq_work and the agent a context switch), but a forced one whenever a record takes the
 * ring's unread data across a quarter of its size (25, 50, 75 %), so that the agent (waiting edge-triggered in epoll,
 * RingWaker) drains before a burst fills the ring. Once per quarter, not on every record past the mark: the records
 * that arrive while the agent wakes up must not each raise an interrupt. A ring then only has to hold what arrives
 * while the agent wakes up, not 250 ms of a burst: small rings keep the agent's memory down (the kernel maps a
 * ring's data pages twice into the consumer, so every KiB of ring counts double in its RSS). */
static __always_inline __u64 sp_ring_record_bytes(__u64 size) { return 8 + ((size + 7) & ~7ULL); /* header */ }

static __always_inline __u64 sp_ring_wake(__u64 before, __u64 after, __u64 ring_size) {
  const __u64 quarter = ring_size / 4;
  return before / quarter != after / quarter ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* For a record of `size` bytes about to be copied in with bpf_ringbuf_output(). */
static __always_inline __u64 sp_ring_flags_output(void *ring, __u64 ring_size, __u64 size) {
  const __u64 before = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
  return sp_ring_wake(before, before + sp_ring_record_bytes(size), ring_size);
}

/* For a record of `size` bytes reserved with bpf_ringbuf_reserve() (already part of the unread data), to submit. */
static __always_inline __u64 sp_ring_flags_reserved(void *ring, __u64 ring_size, __u64 size) {
  const __u64 after = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
  const __u64 rec = sp_ring_record_bytes(size);
  return sp_ring_wake(after > rec ? after - rec : 0, after, ring_size);
}

#endif
