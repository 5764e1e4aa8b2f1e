// PostgreSQL's own view of each query, lock wait and transaction, from its USDT probes (postgres built with
// --enable-dtrace, as Debian's is). Attached per backend process, to the backends serving a profiled worker only
// (userspace/agent/families/pgserver_family.h): the other backends of the cluster never trap. Query records go
// through a ring buffer (userspace needs the verb); lock waits and transaction outcomes are counted per backend in
// the kernel.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
/* libbpf gives each attach of a USDT probe its own spec slot (one per probe and backend here, six per backend) and
 * has 256 by default: room for about 40 backends. 4096 slots (about 850 KiB of array) hold the probes of about 680
 * backends serving profiled workers at once; an attach beyond that fails and is reported like any other. */
#define BPF_USDT_MAX_SPEC_CNT 4096
/* The address -> slot table is used only on kernels without BPF cookies (before 5.15); kept at the same size. */
#define BPF_USDT_MAX_IP_CNT 4096
#include <bpf/usdt.bpf.h>

#include "bpf_common.h"
#include "pgserver.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What a backend has in flight (0: nothing): the statement and the heavyweight lock wait. Task-local storage, not
 * hashes keyed by the backend's tgid: after a backend's first statement its slot is found without taking a lock,
 * where a hash update and delete per statement take two (each an interrupt-disabling spinlock: a hypervisor exit on
 * paravirtualised guests). Backends are single-threaded, so the task is the backend. */
struct pgs_task {
  __u64 query_start_ns;
  __u64 text; /* user pointer, still valid at query__done (the backend owns the string for the whole query) */
  __u64 lock_start_ns;
};

struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct pgs_task);
} pgs_tasks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, struct pgs_backend_stats);
} pgs_backend SEC(".maps");

// Records are cut to their text (a 60-byte statement takes about 100 bytes of ring, not 288): 1 MiB holds
// thousands of statements per drain.
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, SP_PGS_RING_BYTES);
} pgs_events SEC(".maps");

// A record is built here before it is copied into the ring at its real length.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pgs_query_event);
} pgs_build SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, SP_PGS_LOCK_RING_BYTES);
} pgs_lock_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SP_PGS_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} pgs_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx) { sp_percpu_inc(&pgs_stats, idx); }

static __always_inline struct pgs_backend_stats *backend_stats(__u32 tgid) {
  struct pgs_backend_stats *s = bpf_map_lookup_elem(&pgs_backend, &tgid);
  if (s) return s;
  struct pgs_backend_stats zero = {};
  bpf_map_update_elem(&pgs_backend, &tgid, &zero, BPF_NOEXIST);
  return bpf_map_lookup_elem(&pgs_backend, &tgid);
}

SEC("usdt")
int BPF_USDT(pgs_query_start, const char *query) {
  __u32 tgid = sp_current_pid_tgid() >> 32;
  if (!tgid) return 0;  // outside the agent's PID namespace
  struct pgs_task *t = sp_task_slot(&pgs_tasks, true);
  if (!t) return 0;
  t->text = (__u64)query;
  t->query_start_ns = bpf_ktime_get_ns();
  return 0;
}

SEC("usdt")
int BPF_USDT(pgs_query_done, const char *query) {
  __u64 end = bpf_ktime_get_ns();
  __u32 tgid = sp_current_pid_tgid() >> 32;
  struct pgs_task *t = sp_task_slot(&pgs_tasks, false);
  if (!t || !t->query_start_ns) {
    stat_inc(SP_PGS_STAT_UNMATCHED);
    return 0;
  }
  const __u64 start_ns = t->query_start_ns, text = t->text;
  t->query_start_ns = 0;
  __u32 zero = 0;
  struct pgs_query_event *e = bpf_map_lookup_elem(&pgs_build, &zero);
  if (!e) return 0;
  e->tgid = tgid;
  e->start_ns = start_ns;
  e->end_ns = end;
  long n = bpf_probe_read_user_str(e->text, sizeof e->text, (const void *)text);
  __u32 len = n > 0 ? (__u32)(n - 1) : 0;
  if (len > SP_PGS_TEXT_MAX - 1) len = SP_PGS_TEXT_MAX - 1;
  e->text_len = len;
  __u64 size = __builtin_offsetof(struct pgs_query_event, text) + len + 1;
  if (size > sizeof *e) size = sizeof *e;
  // Cut to the text; no wakeup per query (sp_ring_wake()).
  if (bpf_ringbuf_output(&pgs_events, e, size, sp_ring_flags_output(&pgs_events, SP_PGS_RING_BYTES, size))) {
    stat_inc(SP_PGS_STAT_EVENTS_LOST);
    struct pgs_backend_stats *b = backend_stats(tgid);
    if (!b) return 0;
    __u64 dur = end - start_ns;
    __u32 i = sp_lat_bucket(dur);
    if (i < SP_LAT_BUCKETS) __sync_fetch_and_add(&b->lost_buckets[i], 1);
    __sync_fetch_and_add(&b->lost_count, 1);
    __sync_fetch_and_add(&b->lost_sum_ns, dur);
  }
  return 0;
}

SEC("usdt")
int BPF_USDT(pgs_lock_wait_start) {
  __u32 tgid = sp_current_pid_tgid() >> 32;
  if (!tgid) return 0;
  struct pgs_task *t = sp_task_slot(&pgs_tasks, true);
  if (t) t->lock_start_ns = bpf_ktime_get_ns();
  return 0;
}

SEC("usdt")
int BPF_USDT(pgs_lock_wait_done) {
  __u64 end = bpf_ktime_get_ns();
  __u32 tgid = sp_current_pid_tgid() >> 32;
  struct pgs_task *t = sp_task_slot(&pgs_tasks, false);
  if (!t || !t->lock_start_ns) return 0;
  __u64 dur = end - t->lock_start_ns;
  t->lock_start_ns = 0;
  struct pgs_backend_stats *b = backend_stats(tgid);
  if (!b) return 0;
  __u32 i = sp_lat_bucket(dur);
  if (i < SP_LAT_BUCKETS) __sync_fetch_and_add(&b->lock_buckets[i], 1);
  __sync_fetch_and_add(&b->lock_count, 1);
  __sync_fetch_and_add(&b->lock_sum_ns, dur);
  struct pgs_lock_event *e = bpf_ringbuf_reserve(&pgs_lock_events, sizeof *e, 0);
  if (!e) {
    stat_inc(SP_PGS_STAT_EVENTS_LOST);  // the histogram above has it
    return 0;
  }
  e->tgid = tgid;
  e->_pad = 0;
  e->start_ns = end - dur;
  e->end_ns = end;
  bpf_ringbuf_submit(e, sp_ring_flags_reserved(&pgs_lock_events, SP_PGS_LOCK_RING_BYTES, sizeof *e));
  return 0;
}

SEC("usdt")
int BPF_USDT(pgs_txn_commit) {
  struct pgs_backend_stats *b = backend_stats(sp_current_pid_tgid() >> 32);
  if (b) __sync_fetch_and_add(&b->commits, 1);
  return 0;
}

SEC("usdt")
int BPF_USDT(pgs_txn_abort) {
  struct pgs_backend_stats *b = backend_stats(sp_current_pid_tgid() >> 32);
  if (b) __sync_fetch_and_add(&b->aborts, 1);
  return 0;
}
