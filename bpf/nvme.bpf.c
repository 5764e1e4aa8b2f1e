// NVMe commands as the driver sees them: from nvme_setup_cmd (the command is built for the submission queue) to
// nvme_complete_rq (the controller's completion was processed), per disk, queue, opcode and completion status.
// The nvme driver is usually a module: these hooks exist only once it is loaded, and its kernel-internal types are
// relocated against the module's BTF. The block layer's own probes (blockio.bpf.c) measure every disk either way.
//
// Two variants of each hook (tp_btf and raw_tp); userspace loads the one the kernel accepts.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf_common.h"
#include "nvme.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static const __u64 nvme_bounds[SP_IO_BOUNDS] = SP_IO_BOUNDS_NS;

/* The driver's per-request data (drivers/nvme/host/nvme.h), placed right after struct request (blk_mq_rq_to_pdu).
 * Only the field read here is declared; CO-RE finds its offset in nvme_core's BTF. */
struct nvme_request___sp {
  __u16 status;
} __attribute__((preserve_access_index));

struct cmd_info {
  __u64 start_ns;
  __u32 dev;
  __u16 qid;
  __u8 opcode;
  __u8 _pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH); /* a command we never see complete must not leak its entry */
  __uint(max_entries, 65536);
  __type(key, __u64); /* struct request * */
  __type(value, struct cmd_info);
} nvme_cmds SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct sp_nvme_key);
  __type(value, struct sp_nvme_hist);
} nvme_hist SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SP_NVME_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} nvme_stats SEC(".maps");

static __always_inline void on_setup(struct request *rq, void *cmd) {
  struct cmd_info info = {.start_ns = bpf_ktime_get_ns()};
  struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
  if (disk) info.dev = (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
  // Like the driver's nvme_req_qid(): the admin queue has no namespace (queuedata), I/O queue n is hctx n-1.
  if (BPF_CORE_READ(rq, q, queuedata)) info.qid = BPF_CORE_READ(rq, mq_hctx, queue_num) + 1;
  bpf_probe_read_kernel(&info.opcode, sizeof info.opcode, cmd);
  __u64 key = (__u64)rq;
  bpf_map_update_elem(&nvme_cmds, &key, &info, BPF_ANY);
}

static __always_inline void on_complete(struct request *rq) {
  __u64 now = bpf_ktime_get_ns();
  __u64 key = (__u64)rq;
  struct cmd_info *p = bpf_map_lookup_elem(&nvme_cmds, &key);
  if (!p) {
    sp_percpu_inc(&nvme_stats, SP_NVME_STAT_UNTRACKED);
    return;
  }
  struct cmd_info info = *p;
  bpf_map_delete_elem(&nvme_cmds, &key);

  struct nvme_request___sp *nreq = (void *)rq + bpf_core_type_size(struct request);
  struct sp_nvme_key k = {.dev = info.dev, .qid = info.qid, .opcode = info.opcode};
  // Without the driver's BTF the field cannot be located: say "unknown" rather than read a guessed offset.
  k.status = bpf_core_type_exists(struct nvme_request___sp) ? BPF_CORE_READ(nreq, status) : SP_NVME_STATUS_UNKNOWN;
  struct sp_nvme_hist *h = bpf_map_lookup_elem(&nvme_hist, &k);
  if (!h) {
    struct sp_nvme_hist zero = {};
    bpf_map_update_elem(&nvme_hist, &k, &zero, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&nvme_hist, &k);
    if (!h) {
      sp_percpu_inc(&nvme_stats, SP_NVME_STAT_FULL);
      return;
    }
  }
  __u64 ns = now - info.start_ns;
  __u32 b;
  for (b = 0; b < SP_IO_BOUNDS; b++) {
    if (ns <= nvme_bounds[b]) break;
  }
  if (b < SP_IO_BUCKETS) __sync_fetch_and_add(&h->buckets[b], 1);
  __sync_fetch_and_add(&h->count, 1);
  __sync_fetch_and_add(&h->sum_ns, ns);
}

SEC("tp_btf/nvme_setup_cmd")
int BPF_PROG(nvme_setup_btf, struct request *rq, void *cmd) {
  on_setup(rq, cmd);
  return 0;
}

SEC("tp_btf/nvme_complete_rq")
int BPF_PROG(nvme_complete_btf, struct request *rq) {
  on_complete(rq);
  return 0;
}

SEC("raw_tp/nvme_setup_cmd")
int nvme_setup_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_setup((struct request *)ctx->args[0], (void *)ctx->args[1]);
  return 0;
}

SEC("raw_tp/nvme_complete_rq")
int nvme_complete_raw(struct bpf_raw_tracepoint_args *ctx) {
  on_complete((struct request *)ctx->args[0]);
  return 0;
}
