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
//
// Thread states (every thread of a profiled process): sched_switch, sched_wakeup and sched_wakeup_new, as tp_btf
// (typed task pointers) or raw_tp where tp_btf cannot attach. They fire for every task on the host: a task leaves on
// one bit test of a bitmap of profiled host TGIDs (no map lookup, no helper call in the tp_btf variant), then one hash
// lookup (sched_procs) for the few bits set. A profiled thread's time goes to one state at a time (reactor.h
// SP_ST_*), closed at each transition; on the main thread, the epoll hooks above also close the state at each tick
// boundary, so the parts of the completed ticks (tick_ns) sum exactly to the tick time counted in reactor_procs.
// clang-format off: vmlinux.h first, the libbpf headers need its types
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf_common.h"
#include "reactor.h"
// clang-format on

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

// Profiled processes for the scheduler hooks: host TGID (task->tgid) -> TGID as the agent sees it. Userspace fills it
// in the initial PID namespace (both are the same); in another namespace it cannot know host ids, and the epoll hooks
// learn the pair when a profiled main thread calls epoll (see learn_process).
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, __u32);
} sched_procs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32); /* host TID (task->pid) */
  __type(value, struct reactor_thread);
} reactor_threads SEC(".maps");

// Bit tgid % (64 * SP_TGID_WORDS) set: the host TGID may be in sched_procs (written by userspace and learn_process).
__u64 tgid_bits[SP_TGID_WORDS] = {};
// Thread entries that could not be made (reactor_threads full) or whose TID was reused before userspace collected
// the exited thread's entry: that thread's states are not counted.
__u64 threads_lost = 0;

// Syscall numbers that classify an interruptible sleep (from <sys/syscall.h>; -1: none on this architecture).
const volatile __s64 nr_futex = -1;
const volatile __s64 nr_futex_waitv = -1;
// Whether sched_switch passes prev_state (5.18, "sched/tracing: Don't re-read p->state when emitting sched_switch
// event"); before, the state is read from prev->__state (prev is the current task there).
const volatile bool switch_has_prev_state = true;

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

// The calling main thread's process entry when the process is profiled, else NULL; `tgid`: its TGID as the agent
// sees it.
static __always_inline struct reactor_proc *profiled_process(__u32 *tgid) {
  *tgid = sp_current_pid_tgid() >> 32;
  if (!*tgid) return 0;  // outside the agent's PID namespace
  return bpf_map_lookup_elem(&reactor_procs, tgid);
}

// The prefilter: false for almost every task on the host, with one load and no helper call.
static __always_inline bool maybe_profiled(__u32 host_tgid) {
  __u64 word = tgid_bits[(host_tgid / 64) % SP_TGID_WORDS];
  return (word >> (host_tgid % 64)) & 1;
}

// The entry of thread `tid` of host process `host_tgid`, made (in state `state` from `now`) if the process is
// profiled and the thread has none yet; NULL for a thread that is not counted.
static __always_inline struct reactor_thread *thread_entry(__u32 tid, __u32 host_tgid, __u64 now, __u32 state) {
  struct reactor_thread *t = bpf_map_lookup_elem(&reactor_threads, &tid);
  if (t) {
    if (t->flags & SP_THREAD_DEAD) {
      // The TID of a thread that exited was given to a new one before userspace collected the old entry: the old
      // values stay for userspace; the new thread goes uncounted until then.
      __sync_fetch_and_add(&threads_lost, 1);
      return 0;
    }
    return t;
  }
  __u32 *agent_tgid = bpf_map_lookup_elem(&sched_procs, &host_tgid);
  if (!agent_tgid) return 0;
  struct reactor_thread fresh = {};
  fresh.since_ns = now;
  fresh.first_ns = now;
  fresh.tgid = *agent_tgid;
  fresh.state = state;
  fresh.flags = tid == host_tgid ? SP_THREAD_MAIN : 0;
  if (bpf_map_update_elem(&reactor_threads, &tid, &fresh, BPF_NOEXIST) &&
      bpf_map_lookup_elem(&reactor_threads, &tid) == 0) {
    __sync_fetch_and_add(&threads_lost, 1);
    return 0;
  }
  return bpf_map_lookup_elem(&reactor_threads, &tid);
}

// Closes the current state at `now` (into the tick too while the main thread is inside one) and starts `next`. A
// thread's events come from several CPUs (switch-out on one, wakeup on another) but in order: each happens after the
// one before has finished (the scheduler's own locking orders them).
static __always_inline void set_state(struct reactor_thread *t, __u64 now, __u32 next) {
  __u32 cur = t->state;
  if (now > t->since_ns && cur < SP_STATES) {
    barrier_var(cur);  // for the verifier: the compiler merges the test above with the callers' and loses the bound
    cur &= 7;
    __u64 d = now - t->since_ns;
    t->ns[cur] += d;
    if (t->flags & SP_THREAD_IN_TICK) t->cur_tick_ns[cur] += d;
  }
  if (now > t->since_ns) t->since_ns = now;
  t->state = next;
}

// Task states (include/linux/sched.h; the values have been stable since 4.14).
#define SP_TASK_INTERRUPTIBLE 0x1
#define SP_TASK_UNINTERRUPTIBLE 0x2
#define SP_TASK_DEAD 0x80

// Where an interruptible sleep of the current task sleeps: the syscall it is in (x86_64: orig_ax of its user
// registers; -1 outside a syscall).
static __always_inline __u32 sleep_state(void) {
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
  if (!regs) return SP_ST_OTHER_WAIT;
  __s64 nr = BPF_CORE_READ(regs, orig_ax);
  if (nr == nr_futex || nr == nr_futex_waitv) return SP_ST_LOCK_WAIT;
  if (nr == nr_epoll_wait || nr == nr_epoll_pwait || nr == nr_epoll_pwait2) return SP_ST_IDLE;
  return SP_ST_OTHER_WAIT;
}

// prev (the current task) leaves its CPU in `prev_state`.
static __always_inline void switch_out(struct task_struct *prev, __u32 tid, __u32 host_tgid, bool preempt,
                                       __u64 prev_state, __u64 now) {
  struct reactor_thread *t = thread_entry(tid, host_tgid, now, SP_ST_ON_CPU);
  if (!t) return;
  __u32 next;
  if (prev_state & SP_TASK_DEAD) {
    // A tick that never reached its epoll call is no tick (reactor_procs does not count it either): its parts stay
    // in cur_tick_ns, which userspace ignores in an exited thread.
    set_state(t, now, SP_STATES);
    t->flags = (t->flags & ~SP_THREAD_IN_TICK) | SP_THREAD_DEAD;
    return;
  }
  if (preempt || !(prev_state & 0xff)) {
    next = SP_ST_RUNQUEUE;
  } else if (prev_state & SP_TASK_UNINTERRUPTIBLE) {
    next = BPF_CORE_READ_BITFIELD_PROBED(prev, in_iowait) ? SP_ST_DISK : SP_ST_OTHER_WAIT;
  } else if (prev_state & SP_TASK_INTERRUPTIBLE) {
    next = sleep_state();
  } else {
    next = SP_ST_OTHER_WAIT;  // stopped, traced
  }
  set_state(t, now, next);
}

static __always_inline void switch_in(__u32 tid, __u32 host_tgid, __u64 now) {
  // A thread first seen here was runnable until now: nothing is known before.
  struct reactor_thread *t = thread_entry(tid, host_tgid, now, SP_ST_RUNQUEUE);
  if (t) set_state(t, now, SP_ST_ON_CPU);
}

static __always_inline void woken(__u32 tid, __u32 host_tgid) {
  if (!maybe_profiled(host_tgid)) return;
  __u64 now = bpf_ktime_get_ns();
  struct reactor_thread *t = thread_entry(tid, host_tgid, now, SP_ST_RUNQUEUE);
  // A wakeup of a thread that is running or already runnable changes nothing (e.g. woken before it slept).
  if (t && t->state != SP_ST_ON_CPU && t->state != SP_ST_RUNQUEUE && t->state < SP_STATES)
    set_state(t, now, SP_ST_RUNQUEUE);
}

static __always_inline __u32 tick_bucket(__u64 ns) {
  __u32 i;
  for (i = 0; i < SP_TICK_BOUNDS; i++) {
    if (ns <= tick_bounds[i]) return i;
  }
  return SP_TICK_BOUNDS;
}

// In another PID namespace than the host's, userspace cannot fill sched_procs (it knows no host ids): the first epoll
// call of a profiled main thread adds its process (current's host and agent TGIDs are both known here). A worker that
// never calls epoll there has no thread states.
static __always_inline void learn_process(__u32 host_tgid, __u32 agent_tgid) {
  if (!sp_pidns_ino) return;
  if (bpf_map_lookup_elem(&sched_procs, &host_tgid)) return;
  bpf_map_update_elem(&sched_procs, &host_tgid, &agent_tgid, BPF_NOEXIST);
  __sync_fetch_and_or(&tgid_bits[(host_tgid / 64) % SP_TGID_WORDS], 1ULL << (host_tgid % 64));
}

// The main thread's state entry at a tick boundary: it is running; the state in progress closes at `now`, so that
// the tick's parts (tick_ns) sum to the tick exactly.
static __always_inline struct reactor_thread *main_thread_at(__u32 agent_tgid, __u64 now) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 host_tgid = id >> 32;
  learn_process(host_tgid, agent_tgid);
  struct reactor_thread *t = thread_entry((__u32)id, host_tgid, now, SP_ST_ON_CPU);
  if (t) set_state(t, now, SP_ST_ON_CPU);
  return t;
}

// Only the process's main thread writes its entry, so plain stores suffice; userspace reading meanwhile may see a
// tick counted in `ticks` before its bucket, which the next read corrects.
static __always_inline void on_enter(struct reactor_proc *p, __u32 agent_tgid) {
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
  struct reactor_thread *t = main_thread_at(agent_tgid, now);
  if (!t) return;
  // The tick completed (counted above when its start was seen): its parts join the completed ticks'.
  if (p->return_ns && (t->flags & SP_THREAD_IN_TICK)) {
    for (int i = 0; i < SP_STATES; i++) t->tick_ns[i] += t->cur_tick_ns[i];
  }
  for (int i = 0; i < SP_STATES; i++) t->cur_tick_ns[i] = 0;
  t->flags &= ~SP_THREAD_IN_TICK;
}

static __always_inline void on_exit(struct reactor_proc *p, __u32 agent_tgid, __s64 ret) {
  if (ret == -SP_EINTR) return;
  __u64 now = bpf_ktime_get_ns();
  if (p->enter_ns) {
    p->waits += 1;
    p->wait_sum_ns += now - p->enter_ns;
  }
  p->enter_ns = 0;
  p->return_ns = now;
  struct reactor_thread *t = main_thread_at(agent_tgid, now);
  if (t) t->flags |= SP_THREAD_IN_TICK;
}

static __always_inline int tp_enter(void) {
  if (!is_main_thread()) return 0;
  __u32 tgid;
  struct reactor_proc *p = profiled_process(&tgid);
  if (p) on_enter(p, tgid);
  return 0;
}

static __always_inline int tp_exit(struct syscall_exit_ctx *ctx) {
  if (!is_main_thread()) return 0;
  __u32 tgid;
  struct reactor_proc *p = profiled_process(&tgid);
  if (p) on_exit(p, tgid, ctx->ret);
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
  __u32 tgid;
  struct reactor_proc *p = profiled_process(&tgid);
  if (p) on_enter(p, tgid);
  return 0;
}

// raw_syscalls:sys_exit(struct pt_regs *regs, long ret). The exit carries no syscall number: the exit that follows an
// epoll entry on the same thread is that call's (a thread is in one syscall at a time), so only a thread marked as
// inside epoll goes on. A return from a wait that began before counting did is missed; the next one is seen.
SEC("raw_tp/sys_exit")
int rt_raw_exit(struct bpf_raw_tracepoint_args *ctx) {
  if (!is_main_thread()) return 0;
  __u32 tgid;
  struct reactor_proc *p = profiled_process(&tgid);
  if (!p || !p->enter_ns) return 0;
  on_exit(p, tgid, (__s64)ctx->args[1]);
  return 0;
}

// The scheduler's hooks. sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int
// prev_state); prev is the current task.
static __always_inline void on_switch(bool preempt, struct task_struct *prev, __u32 prev_tid, __u32 prev_tgid,
                                      __u64 prev_state, __u32 next_tid, __u32 next_tgid) {
  bool out = maybe_profiled(prev_tgid), in = maybe_profiled(next_tgid);
  if (!out && !in) return;
  __u64 now = bpf_ktime_get_ns();
  if (out) {
    if (!switch_has_prev_state) prev_state = BPF_CORE_READ(prev, __state);
    switch_out(prev, prev_tid, prev_tgid, preempt, prev_state, now);
  }
  if (in) switch_in(next_tid, next_tgid, now);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rt_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state) {
  // Typed pointers: plain loads, no helper call before the prefilter has said no.
  on_switch(preempt, prev, prev->pid, prev->tgid, switch_has_prev_state ? prev_state : 0, next->pid, next->tgid);
  return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rt_wakeup_btf, struct task_struct *p) {
  woken(p->pid, p->tgid);
  return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(rt_wakeup_new_btf, struct task_struct *p) {
  woken(p->pid, p->tgid);
  return 0;
}

SEC("raw_tp/sched_switch")
int rt_switch_raw(struct bpf_raw_tracepoint_args *ctx) {
  struct task_struct *prev = (struct task_struct *)ctx->args[1];
  struct task_struct *next = (struct task_struct *)ctx->args[2];
  __u64 id = bpf_get_current_pid_tgid();  // prev is current
  on_switch((bool)ctx->args[0], prev, (__u32)id, id >> 32, switch_has_prev_state ? ctx->args[3] : 0,
            BPF_CORE_READ(next, pid), BPF_CORE_READ(next, tgid));
  return 0;
}

SEC("raw_tp/sched_wakeup")
int rt_wakeup_raw(struct bpf_raw_tracepoint_args *ctx) {
  struct task_struct *p = (struct task_struct *)ctx->args[0];
  woken(BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid));
  return 0;
}

SEC("raw_tp/sched_wakeup_new")
int rt_wakeup_new_raw(struct bpf_raw_tracepoint_args *ctx) {
  struct task_struct *p = (struct task_struct *)ctx->args[0];
  woken(BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid));
  return 0;
}
