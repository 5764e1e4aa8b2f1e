// Reactor ticks: on each profiled worker's main thread (the one running Twisted's reactor), the time from a return of
// epoll_wait/epoll_pwait/epoll_pwait2 to the next entry into one of them (a tick: the reactor running callbacks), and
// from an entry to its return (a wait: idle in epoll). Counted in the kernel per process, into Synapse's own tick
// buckets; nothing goes through a ring buffer.
//
// Hooks, in the order userspace tries them:
// - the per-syscall tracepoints syscalls:sys_{enter,exit}_epoll_{wait,pwait,pwait2} (CONFIG_FTRACE_SYSCALLS, on in
//   Debian's kernels and here): they fire only for epoll calls, so the many other syscalls of every task on the host
//   pay nothing, and no kprobe or fentry is needed (neither works on some kernels we run on). They are perf-event
//   tracepoints: attaching one needs its event id, which only tracefs shows; where the host has not mounted it (this
//   test machine, most containers), userspace reads the ids from a tracefs mounted in a private mount namespace
//   (userspace/probes/tracepoint_ids.h). epoll_pwait2 (5.11) may be missing: userspace attaches the four others
//   without it.
// - raw_syscalls:sys_enter/sys_exit (raw_tp: attached by name, no tracefs needed), where the per-syscall tracepoints
//   cannot be attached (no tracefs and no right to mount one, a kernel without syscall tracepoints): they fire for
//   every syscall of every task, so the program leaves first on the cheapest test (not a main thread, then not an
//   epoll call, then not a profiled process).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf_common.h"
#include "reactor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static const __u64 tick_bounds[SP_TICK_BOUNDS] = SP_TICK_BOUNDS_NS;

// The epoll syscall numbers of the agent's architecture (from <sys/syscall.h>), for the raw_syscalls variant only;
// -1: the architecture has no such call.
const volatile __s64 nr_epoll_wait = -1;
const volatile __s64 nr_epoll_pwait = -1;
const volatile __s64 nr_epoll_pwait2 = -1;

// -EINTR: the call was interrupted by a signal. Python's epoll.poll() runs the signal handlers and calls again (PEP
// 475) within the same poll() Synapse times, so this return does not end the wait.
#define SP_EINTR 4

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32); /* TGID in the agent's PID namespace (sp_current_pid_tgid) */
  __type(value, struct reactor_proc);
} reactor_procs SEC(".maps");

// The layout of every syscalls:sys_exit_* event (tracefs events/syscalls/sys_exit_epoll_wait/format): the common
// header, `int __syscall_nr` at 8, `long ret` at 16 (the kernel's struct syscall_trace_exit; read from the format file
// on 6.18). Tracepoint contexts are not relocated by CO-RE: a kernel that changed this layout would need a variant.
struct syscall_exit_ctx {
  __u64 common;
  __s32 nr;
  __u32 _pad;
  __s64 ret;
};

// Whether the calling thread is its process's main thread (the thread-group leader: tid == tgid, in the host's ids
// as in any namespace's). The first test of every program: no map lookup, no namespace translation, and most threads
// that call epoll are not a main thread (and with raw_syscalls most calls are not epoll's).
static __always_inline bool is_main_thread(void) {
  __u64 id = bpf_get_current_pid_tgid();
  return (__u32)id == (__u32)(id >> 32);
}

// The calling main thread's process entry when the process is profiled, else NULL.
static __always_inline struct reactor_proc *profiled_process(void) {
  __u32 tgid = sp_current_pid_tgid() >> 32;
  if (!tgid) return 0;  // outside the agent's PID namespace
  return bpf_map_lookup_elem(&reactor_procs, &tgid);
}

static __always_inline __u32 tick_bucket(__u64 ns) {
  __u32 i;
  for (i = 0; i < SP_TICK_BOUNDS; i++) {
    if (ns <= tick_bounds[i]) return i;
  }
  return SP_TICK_BOUNDS;
}

// Only the process's main thread writes its entry, so plain stores suffice; userspace reading meanwhile may see a
// tick counted in `ticks` before its bucket, which the next read corrects.
static __always_inline void on_enter(struct reactor_proc *p) {
  __u64 now = bpf_ktime_get_ns();
  if (p->enter_ns) return;  // the same wait, called again after -EINTR
  if (p->return_ns) {
    __u64 tick = now - p->return_ns;
    __u32 b = tick_bucket(tick);
    if (b < SP_TICK_BUCKETS) p->buckets[b] += 1;
    p->ticks += 1;
    p->tick_sum_ns += tick;
  }
  p->enter_ns = now;
}

static __always_inline void on_exit(struct reactor_proc *p, __s64 ret) {
  if (ret == -SP_EINTR) return;
  __u64 now = bpf_ktime_get_ns();
  if (p->enter_ns) {
    p->waits += 1;
    p->wait_sum_ns += now - p->enter_ns;
  }
  p->enter_ns = 0;
  p->return_ns = now;
}

static __always_inline int tp_enter(void) {
  if (!is_main_thread()) return 0;
  struct reactor_proc *p = profiled_process();
  if (p) on_enter(p);
  return 0;
}

static __always_inline int tp_exit(struct syscall_exit_ctx *ctx) {
  if (!is_main_thread()) return 0;
  struct reactor_proc *p = profiled_process();
  if (p) on_exit(p, ctx->ret);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_epoll_wait")
int rt_wait_enter(void *ctx) { return tp_enter(); }

SEC("tracepoint/syscalls/sys_exit_epoll_wait")
int rt_wait_exit(struct syscall_exit_ctx *ctx) { return tp_exit(ctx); }

SEC("tracepoint/syscalls/sys_enter_epoll_pwait")
int rt_pwait_enter(void *ctx) { return tp_enter(); }

SEC("tracepoint/syscalls/sys_exit_epoll_pwait")
int rt_pwait_exit(struct syscall_exit_ctx *ctx) { return tp_exit(ctx); }

SEC("tracepoint/syscalls/sys_enter_epoll_pwait2")
int rt_pwait2_enter(void *ctx) { return tp_enter(); }

SEC("tracepoint/syscalls/sys_exit_epoll_pwait2")
int rt_pwait2_exit(struct syscall_exit_ctx *ctx) { return tp_exit(ctx); }

// raw_syscalls:sys_enter(struct pt_regs *regs, long id).
SEC("raw_tp/sys_enter")
int rt_raw_enter(struct bpf_raw_tracepoint_args *ctx) {
  if (!is_main_thread()) return 0;
  __s64 nr = (__s64)ctx->args[1];
  if (nr != nr_epoll_wait && nr != nr_epoll_pwait && nr != nr_epoll_pwait2) return 0;
  struct reactor_proc *p = profiled_process();
  if (p) on_enter(p);
  return 0;
}

// raw_syscalls:sys_exit(struct pt_regs *regs, long ret). The exit carries no syscall number: the exit that follows an
// epoll entry on the same thread is that call's (a thread is in one syscall at a time), so only a thread marked as
// inside epoll goes on. A return from a wait that began before counting did is missed; the next one is seen.
SEC("raw_tp/sys_exit")
int rt_raw_exit(struct bpf_raw_tracepoint_args *ctx) {
  if (!is_main_thread()) return 0;
  struct reactor_proc *p = profiled_process();
  if (!p || !p->enter_ns) return 0;
  on_exit(p, (__s64)ctx->args[1]);
  return 0;
}
