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
#define SP_TICK_BOUNDS_NS                                                                                   \
  {                                                                                                         \
    1000000ULL, 2000000ULL, 5000000ULL, 10000000ULL, 25000000ULL, 50000000ULL, 100000000ULL, 200000000ULL,  \
        500000000ULL, 1000000000ULL, 2000000000ULL, 5000000000ULL                                           \
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

#endif
