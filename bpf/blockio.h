/* Block I/O per process, device and operation: what bpf/blockio.bpf.c and userspace/probes/blockio_probe.cpp share.
 * Fixed-width fields, explicit padding, no pointers. */
#ifndef SP_BPF_BLOCKIO_H
#define SP_BPF_BLOCKIO_H

/* The per-request ring buffer (bytes, a power of two): 5 461 records of 48 bytes; the agent is woken at each quarter
 * filled (sp_ring_wake in bpf_common.h). */
#define SP_IO_RING_BYTES (256 * 1024)

#include "histogram.h"

enum sp_io_op {
  SP_IO_READ = 0,
  SP_IO_WRITE = 1,
  SP_IO_WRITE_SYNC = 2, /* REQ_SYNC or REQ_FUA: someone waits for it (fsync, O_DIRECT, O_DSYNC) */
  SP_IO_FLUSH = 3,
  SP_IO_DISCARD = 4,
  SP_IO_OTHER = 5,
};

struct sp_io_key {
  __u32 tgid; /* the process that created the request, captured in its own context */
  __u32 dev;  /* the disk: major << 20 | minor, like the kernel's dev_t */
  __u32 op;   /* enum sp_io_op */
  __u32 _pad;
};

struct sp_io_hist {
  __u64 queue[SP_IO_BUCKETS]; /* created (io_start/insert) -> issued to the driver */
  __u64 queue_count;
  __u64 queue_sum_ns;
  __u64 device[SP_IO_BUCKETS]; /* issued -> completed */
  __u64 device_count;
  __u64 device_sum_ns;
  __u64 bytes;
};

struct sp_io_event {
  __u32 tgid;
  __u32 dev;
  __u32 op;
  __u32 bytes;
  __u64 start_ns; /* created, or issued when the request was never seen before issue */
  __u64 issue_ns;
  __u64 complete_ns;
};

enum sp_io_stat {
  SP_IO_STAT_EVENTS_LOST = 0,
  SP_IO_STAT_UNTRACKED = 1, /* completions of requests never seen before (in flight when the agent started) */
  /* Where requests were first seen, for attribution checks: with block_io_start, every request should be seen there
   * (in the submitting task); a first sight at insert or issue may be in another task (a kworker). */
  SP_IO_STAT_FIRST_AT_INSERT = 2,
  SP_IO_STAT_FIRST_AT_ISSUE = 3,
  SP_IO_STAT_TRACK_FAILED = 4,   /* no entry could be made for a new request (map full or busy) */
  SP_IO_STAT_NEVER_ISSUED = 5,   /* completed without an issue seen: no device time, not counted */
  /* Flush requests of the block layer's flush machinery (blk-flush), issued by kblockd on behalf of the processes
   * whose flushes are waiting: not counted themselves, their time goes to those processes' requests. */
  SP_IO_STAT_FLUSH_MACHINERY = 6,
  /* Issued again without a requeue event seen in between (the driver refused it and it was dispatched again, often
   * by kblockd): with block_io_start, still the same request of the same process. */
  SP_IO_STAT_REISSUED = 7,
  SP_IO_STAT_MAX = 8,
};

#endif
