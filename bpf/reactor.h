/* Reactor ticks: what bpf/reactor.bpf.c and userspace/probes/reactor_probe.cpp share.
 * Fixed-width fields, explicit padding, no pointers: userspace static_asserts the sizes. */
#ifndef SP_BPF_REACTOR_H
#define SP_BPF_REACTOR_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Synapse's own buckets for python_twisted_reactor_tick_time (synapse/metrics/_reactor_metrics.py), so that both
 * histograms can be compared bucket by bucket: 1 ms .. 5 s, then +Inf. Inclusive upper bounds, like `le`. */
#define SP_TICK_BOUNDS 12
#define SP_TICK_BUCKETS (SP_TICK_BOUNDS + 1)
#define SP_TICK_BOUNDS_NS                                                                                  \
  {                                                                                                        \
    1000000ULL, 2000000ULL, 5000000ULL, 10000000ULL, 25000000ULL, 50000000ULL, 100000000ULL, 200000000ULL, \
        500000000ULL, 1000000000ULL, 2000000000ULL, 5000000000ULL                                          \
  }

/* Per profiled process (key: its TGID as the agent sees it, see sp_current_pid_tgid): userspace inserts a zeroed
 * entry to start counting and deletes it to stop; only the process's main thread (its reactor) is counted. */
struct reactor_proc {
  /* Ticks: from an epoll_wait/epoll_pwait/epoll_pwait2 return to the next entry into one of them. */
  __u64 buckets[SP_TICK_BUCKETS]; /* per bucket, not cumulative */
  __u64 ticks;
  __u64 tick_sum_ns;
  /* Waits: from an entry to its return (both seen). */
  __u64 waits;
  __u64 wait_sum_ns;
  /* The reactor thread's state (written by BPF only; userspace ignores it). */
  __u64 enter_ns;  /* in epoll since (0: not inside, or entered before counting began) */
  __u64 return_ns; /* the last return, which starts the tick in progress (0: none seen yet) */
};

/* Thread states (issue 21 points 2 and 3): where a profiled thread's wall time goes, from the scheduler's tracepoints.
 * Indexes into reactor_thread.ns / tick_ns; userspace names them in the same order. */
#define SP_ST_ON_CPU 0     /* running */
#define SP_ST_RUNQUEUE 1   /* runnable, waiting for a CPU (preempted, or woken and not yet switched in) */
#define SP_ST_LOCK_WAIT 2  /* asleep in futex: locks, condition variables (the GIL too, until gil_wait exists) */
#define SP_ST_DISK 3       /* uninterruptible sleep in io_schedule (task->in_iowait) */
#define SP_ST_IDLE 4       /* asleep in epoll_wait/epoll_pwait/epoll_pwait2 */
#define SP_ST_OTHER_WAIT 5 /* any other sleep: other syscalls, uninterruptible waits that are not I/O, stopped */
#define SP_STATES 6

/* reactor_thread.flags */
#define SP_THREAD_MAIN 1u    /* the process's main thread (tid == tgid): its reactor */
#define SP_THREAD_IN_TICK 2u /* main thread between an epoll return and the next entry: time also goes to tick_ns */
#define SP_THREAD_DEAD 4u    /* exited: final values, BPF writes it no more; userspace folds it in and deletes it */

/* Per thread of a profiled process (key: the thread's id in the initial PID namespace, task->pid). Created by BPF at
 * the thread's first scheduler event (or epoll call) after its process was registered. */
struct reactor_thread {
  __u64 ns[SP_STATES];          /* closed intervals per state */
  __u64 tick_ns[SP_STATES];     /* the part of ns[] inside completed reactor ticks (main thread only) */
  __u64 cur_tick_ns[SP_STATES]; /* the part inside the tick in progress, moved to tick_ns when it completes */
  __u64 since_ns;               /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when `state` began */
  __u64 first_ns;               /* when the entry was made: ns[] sums to since_ns - first_ns */
  __u32 tgid;                   /* the process as the agent sees it (reactor_procs' key) */
  __u32 state;                  /* SP_ST_*; SP_STATES once dead */
  __u32 flags;                  /* SP_THREAD_* */
  __u32 _pad;
};

/* The prefilter of the scheduler hooks: a bitmap of profiled host TGIDs (bit tgid % (64 * SP_TGID_WORDS)) in .bss,
 * tested before any map lookup; a set bit only means "look it up in sched_procs". 64 words (8 cache lines) stay hot in
 * the cache: with tens of profiled processes a few % of other tasks go on to the hash lookup. */
#define SP_TGID_WORDS 64

#endif
