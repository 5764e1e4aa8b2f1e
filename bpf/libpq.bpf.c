// libpq client-side query latency, seen from inside each Synapse worker.
//
// Synchronous calls (PQexec, PQexecParams, PQexecPrepared, PQprepare): an uprobe at entry remembers the start time
// and the SQL pointer per thread, the uretprobe copies the SQL text (the caller still owns it) into a ring-buffer
// record. Asynchronous queries (PQsendQuery* ... PQgetResult() == NULL on the same thread) copy the text at send
// time, because the caller may free it before the result arrives. The synchronous functions call PQsendQuery and
// PQgetResult internally: while a synchronous call is in progress on a thread, the asynchronous probes ignore it.
//
// Each query also carries the Synapse transaction it belongs to, when the worker's Python is one userspace knows how
// to read (pq_py holds that process's offsets): at entry the calling thread has released the GIL inside psycopg2, so
// its Python frames stand still; the probe finds the thread's PyThreadState, walks up to SP_PY_MAX_FRAMES frames to
// the innermost `new_transaction` and copies its `desc` local. No such frame: the query is unattributed, never
// guessed.
//
// Only what userspace needs leaves the kernel: userspace fingerprints the text at once (literals removed) and drops
// it. Records that do not fit in the ring buffer are counted per process into a histogram of their own, so
// per-worker totals stay exact.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "bpf_common.h"
#include "libpq.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct pq_call {
  __u64 start_ns;
  __u64 text;  // user pointer to the SQL (or statement name)
  __u64 conn;
  // The connection whose transaction this thread opened with BEGIN, while it lasts (0: none): its statements belong
  // to the new_transaction found at the BEGIN, so desc below is kept for them instead of walking the frames again.
  __u64 txn_conn;
  __u32 kind;
  __u32 desc_status;
  __u32 desc_len;
  __u32 _pad;
  char desc[SP_PY_DESC_MAX];
};

struct pq_async_call {
  __u64 start_ns;
  __u64 conn;
  __u32 kind;
  __u32 text_len;
  __u32 desc_status;
  __u32 desc_len;
  char desc[SP_PY_DESC_MAX];
  char text[SP_PQ_TEXT_MAX];
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);  // tgid
  __type(value, struct pq_py_proc);
} pq_py SEC(".maps");

// The synchronous call in flight on a thread (start_ns 0: none). Task-local storage, not a hash keyed by thread id:
// after the first call of a thread, finding its slot takes no lock, where a hash update and delete per call take
// two (each one an interrupt-disabling spinlock, which costs a hypervisor exit on paravirtualised guests).
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct pq_call);
} pq_calls SEC(".maps");

// True while the calling thread is inside PQexec & co.
static __always_inline bool in_sync_call(void) {
  struct pq_call *c = sp_task_slot(&pq_calls, false);
  return c && c->start_ns;
}

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

// Records are cut to their text (pq_build below): 2 MiB holds about 9 000 records of 200-byte queries.
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, SP_PQ_RING_BYTES);
} pq_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SP_PQ_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} pq_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx) { sp_percpu_inc(&pq_stats, idx); }

// ---- The Python side: which Synapse transaction is this query part of? ----

static __always_inline __u64 read_u64(__u64 addr) {
  __u64 v = 0;
  if (bpf_probe_read_user(&v, sizeof v, (const void *)addr)) return 0;
  return v;
}

static __always_inline __u32 read_u32(__u64 addr) {
  __u32 v = 0;
  if (bpf_probe_read_user(&v, sizeof v, (const void *)addr)) return 0;
  return v;
}

// The calling thread's PyThreadState. Its GIL is released (we are inside a C call), so the interpreter's "current"
// thread state says nothing; but CPython keeps every thread's state under a pthread key (autoTSSkey), and glibc keeps
// the values of the first 32 keys inline in the thread's TCB, which %fs points at. Whatever the route, the result
// must carry this thread's pthread_t (== its TCB address): a wrong glibc offset or a stale key then falls through to
// walking the interpreter's thread list, which needs nothing from glibc.
static __always_inline __u64 py_thread_state(const struct pq_py_proc *p) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  __u64 tcb = BPF_CORE_READ(task, thread.fsbase);  // x86-64: the TCB is what %fs points at
  if (!tcb) return 0;
  if (p->tls_offset) {
    __u32 key = read_u32(p->runtime + p->tss_key);
    if (key < 32) {
      __u64 ts = read_u64(tcb + p->tls_offset + (__u64)key * 16 + 8);
      if (ts && read_u64(ts + p->ts_thread_id) == tcb) {
        stat_inc(SP_PQ_STAT_PY_TSS);
        return ts;
      }
    }
  }
  __u64 interp = read_u64(p->runtime + p->interp_head);  // the main interpreter: Synapse runs no others
  if (!interp) return 0;
  __u64 ts = read_u64(interp + p->threads_head);
  for (int i = 0; i < SP_PY_MAX_THREADS && ts; i++) {
    if (read_u64(ts + p->ts_thread_id) == tcb) {
      stat_inc(SP_PQ_STAT_PY_LIST);
      return ts;
    }
    ts = read_u64(ts + p->ts_next);
  }
  return 0;
}

// True when `str` is a compact ASCII str of exactly `len` bytes equal to `want` (want holds len + 1 bytes, NUL last).
static __always_inline int py_str_equals(const struct pq_py_proc *p, __u64 str, const char *want, __u32 len) {
  if (!str || read_u64(str + p->str_length) != len) return 0;
  __u32 state = read_u32(str + p->str_state);
  if ((state & (p->state_compact | p->state_ascii)) != (p->state_compact | p->state_ascii)) return 0;
  char buf[16] = {};
  if (len + 1 > sizeof buf) return 0;
  if (bpf_probe_read_user(buf, sizeof buf, (const void *)(str + p->str_data))) return 0;
  for (int i = 0; i < 16; i++) {
    if (i > len) break;
    if (buf[i] != want[i]) return 0;
  }
  return 1;
}

static const char kNewTransaction[16] = "new_transaction";
static const char kDesc[5] = "desc";

// Position of `desc` among the code object's locals (arguments first, so 2 for new_transaction(self, conn, desc, ...)).
static __always_inline int py_desc_index(const struct pq_py_proc *p, __u64 code) {
  __u64 names = read_u64(code + p->co_varnames);
  if (!names) return -1;
  __u64 n = read_u64(names + p->tuple_size);
  for (int i = 0; i < SP_PY_MAX_LOCALS; i++) {
    if (i >= n) break;
    if (py_str_equals(p, read_u64(names + p->tuple_items + (__u64)i * 8), kDesc, 4)) return i;
  }
  return -1;
}

// Fills status/len/out for the calling thread. `out` holds SP_PY_DESC_MAX bytes.
static __always_inline void py_desc(__u32 tgid, __u32 *status, __u32 *out_len, char *out) {
  *out_len = 0;
  struct pq_py_proc *p = bpf_map_lookup_elem(&pq_py, &tgid);
  if (!p) {
    *status = SP_PY_DESC_OFF;
    return;
  }
  __u64 ts = py_thread_state(p);
  if (!ts) {
    *status = SP_PY_DESC_NO_TSTATE;
    return;
  }
  __u64 frame = read_u64(ts + p->ts_frame);
  if (p->cframe_current != SP_PY_NO_CFRAME && frame) frame = read_u64(frame + p->cframe_current);
  // The new_transaction code object seen last (with desc's index on top) spares the name compare on the hot path.
  const __u64 cache = p->cache;
  const __u64 cached_code = cache & ((1ULL << 56) - 1);
  __u64 found = 0, code = 0;
  int idx = -1;
  for (int i = 0; i < SP_PY_MAX_FRAMES && frame; i++) {
    code = read_u64(frame + p->f_code);
    if (code && code == cached_code) {
      idx = (int)(cache >> 56);
      found = frame;
      break;
    }
    if (code && py_str_equals(p, read_u64(code + p->co_name), kNewTransaction, 15) &&
        read_u64(code + p->ob_type) == p->code_type) {
      found = frame;
      break;
    }
    frame = read_u64(frame + p->f_back);
  }
  if (!found) {
    *status = SP_PY_DESC_NO_FRAME;
    return;
  }
  if (idx < 0) {
    idx = py_desc_index(p, code);
    // One 64-bit store: a concurrent reader sees the old pair or the new one, never a mix.
    if (idx >= 0) p->cache = code | ((__u64)idx << 56);
  }
  *status = SP_PY_DESC_BAD_VALUE;
  if (idx < 0 || idx >= SP_PY_MAX_LOCALS) return;
  __u64 obj = read_u64(found + p->f_locals + (__u64)idx * 8);
  // Exactly a str (a cell, when a closure captured desc, or a str subclass: unattributed), compact and ASCII.
  if (!obj || read_u64(obj + p->ob_type) != p->str_type) return;
  __u64 len = read_u64(obj + p->str_length);
  __u32 state = read_u32(obj + p->str_state);
  if (!len || (state & (p->state_compact | p->state_ascii)) != (p->state_compact | p->state_ascii)) return;
  long n = bpf_probe_read_user_str(out, SP_PY_DESC_MAX, (const void *)(obj + p->str_data));
  if (n <= 1) return;
  __u64 got = (__u64)(n - 1);  // a name longer than SP_PY_DESC_MAX - 1 is cut there
  if (got > len) got = len;    // never past the object's own length
  *out_len = (__u32)got;
  *status = SP_PY_DESC_FOUND;
}

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

// Records are built here, then copied into the ring cut to their text: a query of 100 bytes takes about 230 bytes
// of ring, not sizeof(struct pq_event) (1 648), so the ring holds several times more records per drain.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pq_event);
} pq_build SEC(".maps");

// The build record with its fixed part filled; NULL only if the per-CPU array is missing.
static __always_inline struct pq_event *begin_record(__u64 id, __u64 start, __u64 end, __u64 conn, __u32 kind) {
  __u32 zero = 0;
  struct pq_event *e = bpf_map_lookup_elem(&pq_build, &zero);
  if (!e) return 0;
  e->tgid = id >> 32;
  e->tid = (__u32)id;
  e->start_ns = start;
  e->end_ns = end;
  e->conn = conn;
  e->kind = kind;
  return e;
}

// Copies the record, up to its text's NUL, into the ring; a full ring counts the loss (and the query's latency).
static __always_inline void emit(struct pq_event *e) {
  __u32 len = e->text_len;
  if (len > SP_PQ_TEXT_MAX - 1) len = SP_PQ_TEXT_MAX - 1;
  __u64 size = __builtin_offsetof(struct pq_event, text) + len + 1;
  if (size > sizeof *e) size = sizeof *e;
  // No wakeup per query (it would double the probe's cost): see sp_ring_wake().
  if (bpf_ringbuf_output(&pq_events, e, size, sp_ring_flags_output(&pq_events, SP_PQ_RING_BYTES, size))) count_lost(e->tgid, e->end_ns - e->start_ns);
}

enum { SP_TXN_OTHER, SP_TXN_BEGIN, SP_TXN_END };

// psycopg2's own transaction commands, exactly as it sends them (pq_begin_locked, pq_commit, pq_abort): "BEGIN" or
// "BEGIN ISOLATION LEVEL ...", "COMMIT", "ROLLBACK". Anything else (a user's own "commit") is an ordinary statement.
static __always_inline __u32 txn_command(const void *text) {
  char w[10] = {};
  if (bpf_probe_read_user_str(w, sizeof w, text) <= 0) return SP_TXN_OTHER;
  if (w[0] == 'B' && w[1] == 'E' && w[2] == 'G' && w[3] == 'I' && w[4] == 'N' && (w[5] == 0 || w[5] == ' '))
    return SP_TXN_BEGIN;
  if (w[0] == 'C' && w[1] == 'O' && w[2] == 'M' && w[3] == 'M' && w[4] == 'I' && w[5] == 'T' && w[6] == 0)
    return SP_TXN_END;
  if (w[0] == 'R' && w[1] == 'O' && w[2] == 'L' && w[3] == 'L' && w[4] == 'B' && w[5] == 'A' && w[6] == 'C' &&
      w[7] == 'K' && w[8] == 0)
    return SP_TXN_END;
  return SP_TXN_OTHER;
}

static __always_inline void sync_enter(void *conn, const void *text, __u32 kind) {
  __u64 start = bpf_ktime_get_ns();
  __u64 id = sp_current_pid_tgid();
  if (!id) return;  // outside the agent's PID namespace: not a process it attached to
  struct pq_call *c = sp_task_slot(&pq_calls, true);
  if (!c) return;
  c->text = (__u64)text;
  c->conn = (__u64)conn;
  c->kind = kind;
  // One frame walk per transaction: at its BEGIN (psycopg2 opens every non-autocommit transaction with one, on the
  // thread that runs new_transaction), kept for the statements that follow on that connection and thread up to its
  // COMMIT or ROLLBACK. Statements outside such a transaction (autocommit) walk each time.
  const __u32 cmd = kind == SP_PQ_EXEC ? txn_command(text) : SP_TXN_OTHER;
  if (cmd == SP_TXN_BEGIN || !c->txn_conn || c->txn_conn != (__u64)conn) {
    py_desc(id >> 32, &c->desc_status, &c->desc_len, c->desc);
    c->txn_conn = cmd == SP_TXN_BEGIN ? (__u64)conn : 0;
  } else {
    stat_inc(SP_PQ_STAT_DESC_KEPT);
    if (cmd == SP_TXN_END) c->txn_conn = 0;  // this statement still carries the desc (sync_exit copies it)
  }
  c->start_ns = start;
}

static __always_inline void copy_desc(struct pq_event *e, __u32 status, __u32 len, const char *desc) {
  e->desc_status = status;
  e->desc_len = len < SP_PY_DESC_MAX ? len : SP_PY_DESC_MAX - 1;
  __builtin_memcpy(e->desc, desc, SP_PY_DESC_MAX);
}

static __always_inline void sync_exit(void) {
  __u64 end = bpf_ktime_get_ns();
  __u64 id = sp_current_pid_tgid();
  struct pq_call *c = sp_task_slot(&pq_calls, false);
  if (!c || !c->start_ns) {
    stat_inc(SP_PQ_STAT_UNMATCHED);
    return;
  }
  struct pq_call call = *c;
  c->start_ns = 0;
  struct pq_event *e = begin_record(id, call.start_ns, end, call.conn, call.kind);
  if (!e) return;
  copy_desc(e, call.desc_status, call.desc_len, call.desc);
  long n = bpf_probe_read_user_str(e->text, sizeof e->text, (const void *)call.text);
  e->text_len = n > 0 ? (__u32)(n - 1) : 0;
  emit(e);
}

static __always_inline void async_enter(void *conn, const void *text, __u32 kind) {
  __u64 id = sp_current_pid_tgid();
  if (!id) return;
  if (in_sync_call()) return;  // inside PQexec & co.: the synchronous probes time it
  __u32 zero = 0;
  struct pq_async_call *a = bpf_map_lookup_elem(&pq_scratch, &zero);
  if (!a) return;
  a->start_ns = bpf_ktime_get_ns();
  a->conn = (__u64)conn;
  a->kind = kind;
  py_desc(id >> 32, &a->desc_status, &a->desc_len, a->desc);
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
  __u64 id = sp_current_pid_tgid();
  if (result) return 0;                               // more results to come
  if (in_sync_call()) return 0;  // PQexecFinish inside a synchronous call
  struct pq_async_call *a = bpf_map_lookup_elem(&pq_async, &id);
  if (!a) return 0;  // a PQgetResult() with nothing of ours pending (or the NULL after a synchronous call)
  __u64 end = bpf_ktime_get_ns();
  struct pq_event *e = begin_record(id, a->start_ns, end, a->conn, a->kind);
  if (e) {
    __u32 len = a->text_len;
    if (len > SP_PQ_TEXT_MAX - 1) len = SP_PQ_TEXT_MAX - 1;
    bpf_probe_read_kernel(e->text, sizeof e->text, a->text);
    e->text_len = len;
    copy_desc(e, a->desc_status, a->desc_len, a->desc);
    emit(e);
  }
  bpf_map_delete_elem(&pq_async, &id);
  return 0;
}
