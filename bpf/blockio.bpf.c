// Block I/O: queue time (request created -> issued to the driver) and device time (issued -> completed), bytes, per
// process, disk and operation. The process is captured in the context of the task that created the request
// (block_io_start, else block_rq_insert, else block_rq_issue: whichever comes first for that request), keyed by the
// request itself (flush and FUA completions reuse sectors, so (dev, sector) would mix requests up).
//
// Two variants of every hook: tp_btf (typed arguments) and raw_tp (for kernels where tp_btf is unavailable);
// userspace loads the set the kernel accepts and disables the other. Both read the request through CO-RE.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf_common.h"
#include "blockio.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static const __u64 io_bounds[SP_IO_BOUNDS] = SP_IO_BOUNDS_NS;

/* Set by userspace before load: block_io_start is attached, so every new request passes it (and gets a fresh entry)
 * before its first issue. */
const volatile bool sp_have_io_start = false;

struct rq_info {
  __u64 start_ns;
  __u64 issue_ns;
  __u32 tgid;
  __u32 dev;
  __u32 op;
  __u32 bytes;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH); /* a request we never see complete must not leak its entry */
  __uint(max_entries, 65536);
  __type(key, __u64); /* struct request * */
  __type(value, struct rq_info);
} io_requests SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, struct sp_io_key);
  __type(value, struct sp_io_hist);
} io_hist SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, SP_IO_RING_BYTES);
} io_events SEC(".maps");

/* When the flush machinery last issued its flush request, per (device, hardware queue): the moment a process's own
 * empty flush, which waits for that request and is never issued itself, reaches the device. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u64); /* device << 16 | hardware queue */
  __type(value, __u64);
} flush_issued SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SP_IO_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} io_stats SEC(".maps");

static __always_inline __u32 io_bucket(__u64 ns) {
  __u32 i;
  for (i = 0; i < SP_IO_BOUNDS; i++) {
    if (ns <= io_bounds[i]) return i;
  }
  return SP_IO_BOUNDS;
}

static __always_inline __u32 rq_op(struct request *rq) {
  __u32 flags = BPF_CORE_READ(rq, cmd_flags);
  __u32 op = flags & 0xff; /* REQ_OP_MASK: the low REQ_OP_BITS (8) bits */
  if (op == bpf_core_enum_value(enum req_op, REQ_OP_READ)) return SP_IO_READ;
  if (op == bpf_core_enum_value(enum req_op, REQ_OP_WRITE)) {
    /* fsync's cache flush (blkdev_issue_flush): a write with PREFLUSH and no data. */
    __u32 preflush = 1U << bpf_core_enum_value(enum req_flag_bits, __REQ_PREFLUSH);
    if ((flags & preflush) && BPF_CORE_READ(rq, __data_len) == 0) return SP_IO_FLUSH;
    __u32 sync = 1U << bpf_core_enum_value(enum req_flag_bits, __REQ_SYNC);
    __u32 fua = 1U << bpf_core_enum_value(enum req_flag_bits, __REQ_FUA);
    return (flags & (sync | fua)) ? SP_IO_WRITE_SYNC : SP_IO_WRITE;
  }
  if (op == bpf_core_enum_value(enum req_op, REQ_OP_FLUSH)) return SP_IO_FLUSH;
  if (op == bpf_core_enum_value(enum req_op, REQ_OP_DISCARD)) return SP_IO_DISCARD;
  return SP_IO_OTHER;
}

static __always_inline __u64 rq_flush_key(struct request *rq, __u32 dev) {
  return ((__u64)dev << 16) | (BPF_CORE_READ(rq, mq_hctx, queue_num) & 0xffff);
}

static __always_inline __u32 rq_dev(struct request *rq) {
  struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
  if (!disk) return 0;
  __u32 major = BPF_CORE_READ(disk, major);
  __u32 minor = BPF_CORE_READ(disk, first_minor);
  return (major << 20) | minor;
}

// Starts tracking `rq` as a new request created now by the current task.
static __always_inline struct rq_info *track_new(struct request *rq, __u64 now) {
  __u64 key = (__u64)rq;
  struct rq_info fresh = {
      .start_ns = now,
      .tgid = sp_current_pid_tgid() >> 32,
      .dev = rq_dev(rq),
      .op = rq_op(rq),
      .bytes = BPF_CORE_READ(rq, __data_len),
  };
  if (bpf_map_update_elem(&io_requests, &key, &fresh, BPF_ANY)) {
    sp_percpu_inc(&io_stats, SP_IO_STAT_TRACK_FAILED);
    return 0;
  }
  return bpf_map_lookup_elem(&io_requests, &key);
}

// Requests are recycled: an entry that was already issued belongs to an earlier use of the same struct request
// (one whose completion we did not see), never to the request being created now.
static __always_inline struct rq_info *current_entry(struct request *rq) {
  __u64 key = (__u64)rq;
  struct rq_info *info = bpf_map_lookup_elem(&io_requests, &key);
  return info && !info->issue_ns ? info : 0;
}

// block_io_start: where the request is created, in the submitting task. Always a new request.
static __always_inline void on_io_start(struct request *rq) { track_new(rq, bpf_ktime_get_ns()); }

// block_rq_insert: after io_start on kernels that have it (keep that entry), the first sight of the request otherwise.
static __always_inline void on_insert(struct request *rq) {
  if (current_entry(rq)) return;
  sp_percpu_inc(&io_stats, SP_IO_STAT_FIRST_AT_INSERT);
  track_new(rq, bpf_ktime_get_ns());
}

static __always_inline void on_issue(struct request *rq) {
  __u64 now = bpf_ktime_get_ns();
  __u64 key = (__u64)rq;
  struct rq_info *info = bpf_map_lookup_elem(&io_requests, &key);
  if (info && info->issue_ns) {
    // Issued before. With block_io_start a new use of this struct request would have replaced the entry, so this is
    // the same request dispatched again (refused by the driver, retried from kblockd): keep its owner, count device
    // time from now. Without block_io_start it may be a recycled request whose completion was missed: start anew.
    if (sp_have_io_start) {
      sp_percpu_inc(&io_stats, SP_IO_STAT_REISSUED);
      info->issue_ns = now;
      info->bytes = BPF_CORE_READ(rq, __data_len);
      return;
    }
    info = 0;
  }
  if (!info) {  // never seen before issue (no scheduler insert, internal requests)
    if (rq_op(rq) == SP_IO_FLUSH) {
      // The flush machinery's own request, issued by kblockd for the processes whose empty flushes wait for it
      // (those were seen at block_io_start, in their own context): it stands for their flushes, which on_complete
      // charges with the device time from now, so it is not a request of kblockd.
      __u64 fkey = rq_flush_key(rq, rq_dev(rq));
      bpf_map_update_elem(&flush_issued, &fkey, &now, BPF_ANY);
      sp_percpu_inc(&io_stats, SP_IO_STAT_FLUSH_MACHINERY);
      return;
    }
    sp_percpu_inc(&io_stats, SP_IO_STAT_FIRST_AT_ISSUE);
    info = track_new(rq, now);
    if (!info) return;
  }
  info->issue_ns = now;
  // The size may only be final now (merges happen before issue).
  info->bytes = BPF_CORE_READ(rq, __data_len);
}

static __always_inline void on_complete(struct request *rq) {
  __u64 now = bpf_ktime_get_ns();
  __u64 key = (__u64)rq;
  struct rq_info *p = bpf_map_lookup_elem(&io_requests, &key);
  if (!p) {
    sp_percpu_inc(&io_stats, SP_IO_STAT_UNTRACKED);
    return;
  }
  struct rq_info info = *p;
  bpf_map_delete_elem(&io_requests, &key);
  if (!info.issue_ns && info.op == SP_IO_FLUSH) {
    // A process's empty flush, completed by the flush machinery's request (never issued itself): on the device since
    // that request was issued on this queue, if it was issued after this flush was created (one flush request is
    // in flight per queue, and a flush never joins one already sent); otherwise all of its time counts as device.
    __u64 fkey = rq_flush_key(rq, info.dev);
    __u64 *issued = bpf_map_lookup_elem(&flush_issued, &fkey);
    info.issue_ns = issued && *issued >= info.start_ns && *issued <= now ? *issued : info.start_ns;
  }
  if (!info.issue_ns) {  // completed without being issued (e.g. merged away): no device time
    sp_percpu_inc(&io_stats, SP_IO_STAT_NEVER_ISSUED);
    return;
  }

  struct sp_io_key k = {.tgid = info.tgid, .dev = info.dev, .op = info.op};
  struct sp_io_hist *h = bpf_map_lookup_elem(&io_hist, &k);
  if (!h) {
    struct sp_io_hist zero = {};
    bpf_map_update_elem(&io_hist, &k, &zero, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&io_hist, &k);
    if (!h) return;
  }
  __u64 queue = info.issue_ns - info.start_ns;
  __u64 device = now - info.issue_ns;
  __u32 b = io_bucket(queue);
  if (b < SP_IO_BUCKETS) __sync_fetch_and_add(&h->queue[b], 1);
  __sync_fetch_and_add(&h->queue_count, 1);
  __sync_fetch_and_add(&h->queue_sum_ns, queue);
  b = io_bucket(device);
  if (b < SP_IO_BUCKETS) __sync_fetch_and_add(&h->device[b], 1);
  __sync_fetch_and_add(&h->device_count, 1);
  __sync_fetch_and_add(&h->device_sum_ns, device);
  __sync_fetch_and_add(&h->bytes, info.bytes);

  struct sp_io_event *e = bpf_ringbuf_reserve(&io_events, sizeof *e, 0);
  if (!e) {
    sp_percpu_inc(&io_stats, SP_IO_STAT_EVENTS_LOST);
    return;
  }
  e->tgid = info.tgid;
  e->dev = info.dev;
  e->op = info.op;
  e->bytes = info.bytes;
  e->start_ns = info.start_ns;
  e->issue_ns = info.issue_ns;
  e->complete_ns = now;
  bpf_ringbuf_submit(e, sp_ring_flags_reserved(&io_events, SP_IO_RING_BYTES, sizeof *e));  // see sp_ring_wake()
}

// A requeued request (the driver was busy) goes back through insert and issue, often from a kworker: it is still the
// same request of the same process, so clear the issue mark instead of treating the re-insert as a new request.
static __always_inline void on_requeue(struct request *rq) {
  __u64 key = (__u64)rq;
  struct rq_info *info = bpf_map_lookup_elem(&io_requests, &key);
  if (info) info->issue_ns = 0;
}

// A request merged into another is freed without completing: forget it (its bytes now belong to the survivor, whose
// size is read again at issue), or its entry would linger until the LRU evicts it.
static __always_inline void on_merged(struct request *rq) {
  __u64 key = (__u64)rq;
  bpf_map_delete_elem(&io_requests, &key);
}

// block_io_start (6.5+) fires where the request is created, in the submitting task: the best place to attribute.
SEC("tp_btf/block_io_start")
int BPF_PROG(io_start_btf, struct request *rq) {
  on_io_start(rq);
  return 0;
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(rq_insert_btf, struct request *rq) {
  on_insert(rq);
  return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(rq_issue_btf, struct request *rq) {
  on_issue(rq);
  return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(rq_complete_btf, struct request *rq) {
  on_complete(rq);
  return 0;
}

SEC("tp_btf/block_rq_merge")
int BPF_PROG(rq_merge_btf, struct request *rq) {
  on_merged(rq);
  return 0;
}

SEC("raw_tp/block_rq_merge")
int rq_merge_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_merged((struct request *)ctx->args[0]);
  return 0;
}

SEC("tp_btf/block_rq_requeue")
int BPF_PROG(rq_requeue_btf, struct request *rq) {
  on_requeue(rq);
  return 0;
}

SEC("raw_tp/block_rq_requeue")
int rq_requeue_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_requeue((struct request *)ctx->args[0]);
  return 0;
}

SEC("raw_tp/block_io_start")
int io_start_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_io_start((struct request *)ctx->args[0]);
  return 0;
}

SEC("raw_tp/block_rq_insert")
int rq_insert_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_insert((struct request *)ctx->args[0]);
  return 0;
}

SEC("raw_tp/block_rq_issue")
int rq_issue_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_issue((struct request *)ctx->args[0]);
  return 0;
}

SEC("raw_tp/block_rq_complete")
int rq_complete_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_complete((struct request *)ctx->args[0]);
  return 0;
}
