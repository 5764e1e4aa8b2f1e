/* libpq client-side query latency: what bpf/libpq.bpf.c and userspace/bpf/libpq_probe.cpp share.
 * Fixed-width fields, explicit padding, no pointers: userspace static_asserts the sizes. */
#ifndef SP_BPF_LIBPQ_H
#define SP_BPF_LIBPQ_H

#include "histogram.h"

/* Bytes of SQL text copied per query (NUL included). Userspace fingerprints it at once and drops it. */
#define SP_PQ_TEXT_MAX 1536

/* Which entry point a query came through. */
enum sp_pq_kind {
  SP_PQ_EXEC = 0,          /* PQexec(conn, query) */
  SP_PQ_EXEC_PARAMS = 1,   /* PQexecParams(conn, command, ...) */
  SP_PQ_EXEC_PREPARED = 2, /* PQexecPrepared(conn, stmtName, ...): text is the statement name */
  SP_PQ_PREPARE = 3,       /* PQprepare(conn, stmtName, query, ...) */
  SP_PQ_ASYNC = 4,         /* PQsendQuery*(...) ... PQgetResult() == NULL */
  SP_PQ_ASYNC_PREPARED = 5 /* PQsendQueryPrepared: text is the statement name */
};

struct pq_event {
  __u32 tgid;
  __u32 tid;
  __u64 start_ns; /* CLOCK_MONOTONIC */
  __u64 end_ns;
  __u64 conn;     /* PGconn address: tells connections of one process apart */
  __u32 kind;     /* enum sp_pq_kind */
  __u32 text_len; /* bytes of text[] holding the text (NUL excluded); the text may be cut at SP_PQ_TEXT_MAX - 1 */
  char text[SP_PQ_TEXT_MAX];
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
  SP_PQ_STAT_MAX = 2,
};

#endif
