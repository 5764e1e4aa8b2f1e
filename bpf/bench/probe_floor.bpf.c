// The floor of the per-event cost benchmark (scripts/bench_probes.sh): programs that do nothing, attached by
// tests/bench/bench_probes.cpp on exactly the hooks our probe families use (same USDT notes, same uprobe/uretprobe
// addresses, same block tracepoints, same attach type). What a run with them costs above the bare workload is what
// the kernel charges for the hook itself; what our probes cost above that is ours.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h> /* libbpf's USDT attach needs its spec maps, as our USDT programs have */

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("usdt")
int floor_usdt(struct pt_regs *ctx) { return 0; }

SEC("uprobe")
int floor_uprobe(struct pt_regs *ctx) { return 0; }

SEC("uretprobe")
int floor_uretprobe(struct pt_regs *ctx) { return 0; }

// The block family's hooks, in both of its variants (it uses tp_btf where the kernel takes it, raw_tp otherwise).
SEC("tp_btf/block_io_start")
int BPF_PROG(floor_io_start_btf, struct request *rq) { return 0; }
SEC("tp_btf/block_rq_insert")
int BPF_PROG(floor_rq_insert_btf, struct request *rq) { return 0; }
SEC("tp_btf/block_rq_issue")
int BPF_PROG(floor_rq_issue_btf, struct request *rq) { return 0; }
SEC("tp_btf/block_rq_complete")
int BPF_PROG(floor_rq_complete_btf, struct request *rq) { return 0; }
SEC("tp_btf/block_rq_merge")
int BPF_PROG(floor_rq_merge_btf, struct request *rq) { return 0; }
SEC("tp_btf/block_rq_requeue")
int BPF_PROG(floor_rq_requeue_btf, struct request *rq) { return 0; }

SEC("raw_tp/block_io_start")
int floor_io_start_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
SEC("raw_tp/block_rq_insert")
int floor_rq_insert_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
SEC("raw_tp/block_rq_issue")
int floor_rq_issue_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
SEC("raw_tp/block_rq_complete")
int floor_rq_complete_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
SEC("raw_tp/block_rq_merge")
int floor_rq_merge_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
SEC("raw_tp/block_rq_requeue")
int floor_rq_requeue_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }

// The reactor family's hooks, in both of its variants: the per-syscall epoll tracepoints (perf-event tracepoints,
// attached through tracefs) and raw_syscalls' sys_enter/sys_exit (raw_tp, host-wide).
SEC("tracepoint/syscalls/sys_enter_epoll_wait")
int floor_epoll_wait_enter(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_exit_epoll_wait")
int floor_epoll_wait_exit(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_epoll_pwait")
int floor_epoll_pwait_enter(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_exit_epoll_pwait")
int floor_epoll_pwait_exit(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_epoll_pwait2")
int floor_epoll_pwait2_enter(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_exit_epoll_pwait2")
int floor_epoll_pwait2_exit(void *ctx) { return 0; }

SEC("raw_tp/sys_enter")
int floor_sys_enter_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
SEC("raw_tp/sys_exit")
int floor_sys_exit_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }

// The reactor family's scheduler hooks (thread states), tp_btf variant.
SEC("tp_btf/sched_switch")
int BPF_PROG(floor_sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next) { return 0; }
SEC("tp_btf/sched_wakeup")
int BPF_PROG(floor_sched_wakeup_btf, struct task_struct *p) { return 0; }
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(floor_sched_wakeup_new_btf, struct task_struct *p) { return 0; }
