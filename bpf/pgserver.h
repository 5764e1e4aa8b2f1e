/* PostgreSQL server side (USDT probes of the postgres binary): what bpf/pgserver.bpf.c and
 * userspace/probes/pgserver_probe.cpp share. Keys are backend TGIDs; userspace maps each backend to the worker it
 * serves. Fixed-width fields, explicit padding, no pointers. */
#ifndef SP_BPF_PGSERVER_H
#define SP_BPF_PGSERVER_H

#include "histogram.h"

/* Bytes of query text copied per query: enough for userspace to classify the verb; fingerprinted and dropped. */
#define SP_PGS_TEXT_MAX 256
/* Ring buffers (bytes, powers of two) for statements (records cut to their text: at most 288 bytes) and lock
 * waits; the agent is woken at each quarter of one filled (sp_ring_wake in bpf_common.h). */
#define SP_PGS_RING_BYTES (256 * 1024)
#define SP_PGS_LOCK_RING_BYTES (64 * 1024)

struct pgs_query_event {
  __u32 tgid; /* the backend */
  __u32 text_len;
  __u64 start_ns; /* CLOCK_MONOTONIC */
  __u64 end_ns;
  char text[SP_PGS_TEXT_MAX];
};

/* One heavyweight lock wait (lock__wait__start .. lock__wait__done), for recordings. */
struct pgs_lock_event {
  __u32 tgid; /* the backend */
  __u32 _pad;
  __u64 start_ns;
  __u64 end_ns;
};

/* Per backend, exact whatever the ring buffer does. */
struct pgs_backend_stats {
  __u64 lost_buckets[SP_LAT_BUCKETS]; /* queries whose event was lost */
  __u64 lost_count;
  __u64 lost_sum_ns;
  __u64 lock_buckets[SP_LAT_BUCKETS]; /* heavyweight lock waits (lock__wait__start .. done) */
  __u64 lock_count;
  __u64 lock_sum_ns;
  __u64 commits;
  __u64 aborts;
};

enum sp_pgs_stat {
  SP_PGS_STAT_EVENTS_LOST = 0,
  SP_PGS_STAT_UNMATCHED = 1,
  SP_PGS_STAT_MAX = 2,
};

#endif
