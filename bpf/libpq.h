/* libpq client-side query latency: what bpf/libpq.bpf.c and userspace/probes/libpq_probe.cpp share.
 * Fixed-width fields, explicit padding, no pointers: userspace static_asserts the sizes. */
#ifndef SP_BPF_LIBPQ_H
#define SP_BPF_LIBPQ_H

#include "histogram.h"

/* Bytes of SQL text copied per query (NUL included). Userspace fingerprints it at once and drops it. */
#define SP_PQ_TEXT_MAX 1536
/* The per-call ring buffer (bytes, a power of two). Records are cut to their text: a typical Synapse query's record
 * is 200-600 bytes, so this holds about a thousand; the agent is woken at each quarter (sp_ring_wake in bpf_common.h). */
#define SP_PQ_RING_BYTES (512 * 1024)

/* Which entry point a query came through. */
enum sp_pq_kind {
  SP_PQ_EXEC = 0,          /* PQexec(conn, query) */
  SP_PQ_EXEC_PARAMS = 1,   /* PQexecParams(conn, command, ...) */
  SP_PQ_EXEC_PREPARED = 2, /* PQexecPrepared(conn, stmtName, ...): text is the statement name */
  SP_PQ_PREPARE = 3,       /* PQprepare(conn, stmtName, query, ...) */
  SP_PQ_ASYNC = 4,         /* PQsendQuery*(...) ... PQgetResult() == NULL */
  SP_PQ_ASYNC_PREPARED = 5 /* PQsendQueryPrepared: text is the statement name */
};

/* Bytes of a Synapse transaction name (`desc`) copied per query, NUL included. */
#define SP_PY_DESC_MAX 64

/* What the Python frame walk at the libpq entry found (pq_event.desc_status). */
enum sp_py_desc_status {
  SP_PY_DESC_OFF = 0,       /* no settings for this process: attribution is off for it */
  SP_PY_DESC_FOUND = 1,     /* desc[] holds the `desc` of the innermost new_transaction frame */
  SP_PY_DESC_NO_FRAME = 2,  /* the thread's Python stack has no new_transaction frame within SP_PY_MAX_FRAMES */
  SP_PY_DESC_NO_TSTATE = 3, /* the calling thread's PyThreadState was not found */
  SP_PY_DESC_BAD_VALUE = 4, /* new_transaction found, but no `desc` local holding a compact ASCII str */
  SP_PY_DESC_STATUSES = 5,
};

struct pq_event {
  __u32 tgid;
  __u32 tid;
  __u64 start_ns; /* CLOCK_MONOTONIC */
  __u64 end_ns;
  __u64 conn;     /* PGconn address: tells connections of one process apart */
  __u32 kind;     /* enum sp_pq_kind */
  __u32 text_len; /* bytes of text[] holding the text (NUL excluded); the text may be cut at SP_PQ_TEXT_MAX - 1 */
  __u32 desc_status; /* enum sp_py_desc_status */
  __u32 desc_len;    /* bytes of desc[] (NUL excluded), when desc_status is SP_PY_DESC_FOUND */
  char desc[SP_PY_DESC_MAX];
  char text[SP_PQ_TEXT_MAX];
};

/* How many Python frames the walk looks at, innermost first (Synapse: 1-10 between PQexec and new_transaction). */
#define SP_PY_MAX_FRAMES 16
/* How many thread states the fallback walk of the interpreter's thread list visits. */
#define SP_PY_MAX_THREADS 64
/* How many locals of new_transaction are searched for `desc` (Synapse: index 2). */
#define SP_PY_MAX_LOCALS 8
/* pq_py_proc.cframe_current when the thread state points at the frame directly (3.10, 3.13+). */
#define SP_PY_NO_CFRAME 0xffffffffu

/* Per process (key: tgid), written by userspace at attach: where that process's CPython keeps its thread states,
 * frames and strings (userspace/core/python/py_offsets.h explains each field). `cache` is written by BPF. */
struct pq_py_proc {
  __u64 runtime;    /* address of _PyRuntime */
  __u64 str_type;   /* address of PyUnicode_Type */
  __u64 code_type;  /* address of PyCode_Type */
  __u64 cache;      /* last new_transaction code object seen, with the index of `desc` in bits 56-63; 0: none yet */
  __u32 tls_offset; /* offset of glibc's specific_1stblock in the TCB; 0: do not use the TSS key, walk the list */
  __u32 tss_key;    /* offset of autoTSSkey._key in _PyRuntime */
  __u32 interp_head, threads_head, ts_next, ts_thread_id, ts_frame, cframe_current;
  __u32 f_code, f_back, f_locals, co_name, co_varnames;
  __u32 ob_type, tuple_size, tuple_items, str_length, str_state, str_data;
  __u32 state_compact, state_ascii;
  __u32 _pad;
};

/* Per process: queries whose event could not be delivered (ring buffer full). Userspace exports them with verb and
 * table "unknown", so per-worker totals stay exact whatever the ring buffer does. */
struct pq_lost {
  __u64 buckets[SP_LAT_BUCKETS];
  __u64 count;
  __u64 sum_ns;
};

enum sp_pq_stat {
  SP_PQ_STAT_EVENTS_LOST = 0,
  SP_PQ_STAT_UNMATCHED = 1, /* a return without its entry (attached mid-call) */
  SP_PQ_STAT_PY_TSS = 2,    /* thread state found through the TSS key (glibc's inline thread-specific block) */
  SP_PQ_STAT_PY_LIST = 3,   /* thread state found by walking the interpreter's thread list */
  SP_PQ_STAT_DESC_KEPT = 4, /* desc taken from the transaction's BEGIN, no frame walk */
  SP_PQ_STAT_MAX = 5,
};

#endif
