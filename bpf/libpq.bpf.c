// libpq client-side query latency, seen from inside each Synapse worker.
//
// Synchronous calls (PQexec, PQexecParams, PQexecPrepared, PQprepare): an uprobe at entry remembers the start time
// and the SQL pointer per thread, the uretprobe copies the SQL text (the caller still owns it) into a ring-buffer
// record. Asynchronous queries (PQsendQuery* ... PQgetResult() == NULL on the same thread) copy the text at send
// time, because the caller may free it before the result arrives. The synchronous functions call PQsendQuery and
// PQgetResult internally: while a synchronous call is in progress on a thread, the asynchronous probes ignore it.
//
// Only what userspace needs leaves the kernel: userspace fingerprints the text at once (literals removed) and drops
// it. Records that do not fit in the ring buffer are counted per process into a histogram of their own, so
// per-worker totals stay exact.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf_common.h"
#include "libpq.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct pq_call {
  __u64 start_ns;
  __u64 text;  // user pointer to the SQL (or statement name)
  __u64 conn;
  __u32 kind;
  __u32 _pad;
};

struct pq_async_call {
  __u64 start_ns;
  __u64 conn;
  __u32 kind;
  __u32 text_len;
  char text[SP_PQ_TEXT_MAX];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u64);  // pid_tgid
  __type(value, struct pq_call);
} pq_calls SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64);  // pid_tgid
  __type(value, struct pq_async_call);
} pq_async SEC(".maps");

// Scratch space for building a pq_async_call (too big for the BPF stack).
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pq_async_call);
} pq_scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);  // tgid
  __type(value, struct pq_lost);
} pq_lost SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4 * 1024 * 1024);
} pq_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SP_PQ_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} pq_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx) { sp_percpu_inc(&pq_stats, idx); }

static __always_inline void count_lost(__u32 tgid, __u64 dur) {
  stat_inc(SP_PQ_STAT_EVENTS_LOST);
  struct pq_lost *l = bpf_map_lookup_elem(&pq_lost, &tgid);
  if (!l) {
    struct pq_lost zero = {};
    bpf_map_update_elem(&pq_lost, &tgid, &zero, BPF_NOEXIST);
    l = bpf_map_lookup_elem(&pq_lost, &tgid);
    if (!l) return;
  }
  __u32 b = sp_lat_bucket(dur);
  if (b < SP_LAT_BUCKETS) __sync_fetch_and_add(&l->buckets[b], 1);
  __sync_fetch_and_add(&l->count, 1);
  __sync_fetch_and_add(&l->sum_ns, dur);
}

// Reserves and fills the fixed part of a record; NULL (and the loss counted) when the ring buffer is full.
static __always_inline struct pq_event *reserve(__u64 id, __u64 start, __u64 end, __u64 conn, __u32 kind) {
  struct pq_event *e = bpf_ringbuf_reserve(&pq_events, sizeof *e, 0);
  if (!e) {
    count_lost(id >> 32, end - start);
    return 0;
  }
  e->tgid = id >> 32;
  e->tid = (__u32)id;
  e->start_ns = start;
  e->end_ns = end;
  e->conn = conn;
  e->kind = kind;
  return e;
}

static __always_inline void sync_enter(void *conn, const void *text, __u32 kind) {
  __u64 id = bpf_get_current_pid_tgid();
  struct pq_call c = {.start_ns = bpf_ktime_get_ns(), .text = (__u64)text, .conn = (__u64)conn, .kind = kind};
  bpf_map_update_elem(&pq_calls, &id, &c, BPF_ANY);
}

static __always_inline void sync_exit(void) {
  __u64 end = bpf_ktime_get_ns();
  __u64 id = bpf_get_current_pid_tgid();
  struct pq_call *c = bpf_map_lookup_elem(&pq_calls, &id);
  if (!c) {
    stat_inc(SP_PQ_STAT_UNMATCHED);
    return;
  }
  struct pq_call call = *c;
  bpf_map_delete_elem(&pq_calls, &id);
  struct pq_event *e = reserve(id, call.start_ns, end, call.conn, call.kind);
  if (!e) return;
  long n = bpf_probe_read_user_str(e->text, sizeof e->text, (const void *)call.text);
  e->text_len = n > 0 ? (__u32)(n - 1) : 0;
  // No wakeup: userspace drains on a timer; a wakeup per query would double the probe's cost.
  bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline void async_enter(void *conn, const void *text, __u32 kind) {
  __u64 id = bpf_get_current_pid_tgid();
  if (bpf_map_lookup_elem(&pq_calls, &id)) return;  // inside PQexec & co.: the synchronous probes time it
  __u32 zero = 0;
  struct pq_async_call *a = bpf_map_lookup_elem(&pq_scratch, &zero);
  if (!a) return;
  a->start_ns = bpf_ktime_get_ns();
  a->conn = (__u64)conn;
  a->kind = kind;
  long n = bpf_probe_read_user_str(a->text, sizeof a->text, text);
  a->text_len = n > 0 ? (__u32)(n - 1) : 0;
  bpf_map_update_elem(&pq_async, &id, a, BPF_ANY);
}

SEC("uprobe")
int BPF_KPROBE(pq_exec, void *conn, const char *query) {
  sync_enter(conn, query, SP_PQ_EXEC);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(pq_exec_params, void *conn, const char *command) {
  sync_enter(conn, command, SP_PQ_EXEC_PARAMS);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(pq_exec_prepared, void *conn, const char *stmt_name) {
  sync_enter(conn, stmt_name, SP_PQ_EXEC_PREPARED);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(pq_prepare, void *conn, const char *stmt_name, const char *query) {
  sync_enter(conn, query, SP_PQ_PREPARE);
  return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pq_sync_return) {
  sync_exit();
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(pq_send_query, void *conn, const char *query) {
  async_enter(conn, query, SP_PQ_ASYNC);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(pq_send_prepare, void *conn, const char *stmt_name, const char *query) {
  async_enter(conn, query, SP_PQ_ASYNC);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(pq_send_query_prepared, void *conn, const char *stmt_name) {
  async_enter(conn, stmt_name, SP_PQ_ASYNC_PREPARED);
  return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pq_get_result_return, void *result) {
  __u64 id = bpf_get_current_pid_tgid();
  if (result) return 0;                               // more results to come
  if (bpf_map_lookup_elem(&pq_calls, &id)) return 0;  // PQexecFinish inside a synchronous call
  struct pq_async_call *a = bpf_map_lookup_elem(&pq_async, &id);
  if (!a) return 0;  // a PQgetResult() with nothing of ours pending (or the NULL after a synchronous call)
  __u64 end = bpf_ktime_get_ns();
  struct pq_event *e = reserve(id, a->start_ns, end, a->conn, a->kind);
  if (e) {
    __u32 len = a->text_len;
    if (len > SP_PQ_TEXT_MAX - 1) len = SP_PQ_TEXT_MAX - 1;
    bpf_probe_read_kernel(e->text, sizeof e->text, a->text);
    e->text_len = len;
    bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
  }
  bpf_map_delete_elem(&pq_async, &id);
  return 0;
}
