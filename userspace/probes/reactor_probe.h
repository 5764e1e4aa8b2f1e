// The reactor probe family's BPF side: one object on the epoll syscalls' tracepoints (bpf/reactor.bpf.c), system-wide
// (syscall tracepoints have no per-process attach), counting the main thread of each process in its map, and on the
// scheduler's tracepoints the state of every thread of each profiled process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/families/reactor_kernel.h"
#include "probes/handles.h"
#include "reactor.h"

struct reactor_bpf;

namespace sp::bpf {

class ReactorProbe : public agent::ReactorKernel {
 public:
  // Loads and attaches: the per-syscall epoll tracepoints (their ids from tracefs, the host's or a private mount's:
  // probes/tracepoint_ids.h), else raw_syscalls; the scheduler's tracepoints as tp_btf, else raw_tp. `force`:
  // "syscalls" or "raw_syscalls" to use only that epoll variant, `force_sched`: "tp_btf" or "raw_tp" (tests); empty:
  // the first that attaches.
  static std::unique_ptr<ReactorProbe> create(std::string& error, const std::string& force = {},
                                              const std::string& force_sched = {});
  ~ReactorProbe();
  ReactorProbe(const ReactorProbe&) = delete;
  ReactorProbe& operator=(const ReactorProbe&) = delete;

  const std::string& method() const override { return method_; }
  bool add(int host_pid, std::string& error) override;
  void remove(int host_pid) override;
  std::vector<std::pair<int, reactor_proc>> read() const override;
  std::uint64_t hook_misses() const override;  // see recursion_misses()
  const std::string& sched_method() const override { return sched_method_; }
  std::vector<std::pair<std::uint32_t, reactor_thread>> read_threads() const override;
  void drop_thread(std::uint32_t host_tid) override;
  std::uint64_t now_ns() const override;
  std::uint64_t threads_lost() const override;
  // Name and fd of every program loaded (benchmarks read their run-time statistics).
  std::vector<std::pair<std::string, int>> programs() const;

 private:
  ReactorProbe() = default;
  Skeleton<reactor_bpf> skel_;
  std::vector<Link> links_;
  std::string method_;
  std::string sched_method_;
  bool host_ids_ = true;  // the agent is in the initial PID namespace
};

}  // namespace sp::bpf
