// Trivial programs, one per hook type the probe families use. `doctor` and the families' loaders load each one alone
// (all others set to autoload=false) to learn whether this kernel accepts that exact hook; the generic
// libbpf_probe_bpf_prog_type(TRACING) answer is not trusted (it says "no" here although tp_btf loads).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Incremented by every probe program so that an attach test can see that the hook really fired.
__u64 hits = 0;

SEC("tp_btf/block_rq_issue")
int BPF_PROG(probe_tp_btf_block, struct request *rq) {
  __sync_fetch_and_add(&hits, 1);
  return 0;
}

SEC("raw_tp/block_rq_issue")
int probe_raw_tp_block(struct bpf_raw_tracepoint_args *ctx) {
  __sync_fetch_and_add(&hits, 1);
  return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(probe_tp_btf_exit, struct task_struct *p) {
  __sync_fetch_and_add(&hits, 1);
  return 0;
}

// Attached by the uprobe check to a function of the agent's own process (see bpf/feature_probe.cpp).
SEC("uprobe")
int probe_uprobe(struct pt_regs *ctx) {
  __sync_fetch_and_add(&hits, 1);
  return 0;
}
