// The reactor family's kernel side as the family sees it: what userspace/probes/reactor_probe.h does with the BPF
// object (bpf/reactor.bpf.c), as an interface that unit tests implement with a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "reactor.h"

namespace sp::agent {

class ReactorKernel {
 public:
  virtual ~ReactorKernel() = default;
  // Which hooks are in use: "syscalls" (the per-syscall epoll tracepoints) or "raw_syscalls" (sys_enter/sys_exit).
  virtual const std::string& method() const = 0;
  // Starts counting the ticks of process `host_pid`'s main thread, and the states of its threads, from zero. On
  // failure `error` says why.
  virtual bool add(int host_pid, std::string& error) = 0;
  // Stops counting it and drops its counts, its threads' entries included.
  virtual void remove(int host_pid) = 0;
  // The counts of every process being counted (cumulative since its add()), by host PID.
  virtual std::vector<std::pair<int, reactor_proc>> read() const = 0;
  virtual std::uint64_t hook_misses() const = 0;

  // Thread states. Which scheduler hooks are in use: "tp_btf" or "raw_tp".
  virtual const std::string& sched_method() const = 0;
  // Every thread entry (by host TID) of the processes being counted, exited ones (SP_THREAD_DEAD) included until
  // drop_thread() removes them.
  virtual std::vector<std::pair<std::uint32_t, reactor_thread>> read_threads() const = 0;
  virtual void drop_thread(std::uint32_t host_tid) = 0;
  // The clock of reactor_thread's times (CLOCK_MONOTONIC), for the state in progress.
  virtual std::uint64_t now_ns() const = 0;
  // Threads whose states could not be counted (table full, or a TID reused before its exited entry was collected).
  virtual std::uint64_t threads_lost() const = 0;
};

// Loads the kernel side; nullptr with `error` when the kernel refuses.
using ReactorKernelOpener = std::function<std::unique_ptr<ReactorKernel>(std::string& error)>;

}  // namespace sp::agent
