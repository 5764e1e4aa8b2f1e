// The PostgreSQL server-side probe family's BPF side: USDT probes attached per backend process (only the backends
// serving a profiled worker trap), per-backend counters in the kernel, query records through a ring buffer.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/families/pgserver_kernel.h"
#include "probes/handles.h"
#include "probes/map_util.h"
#include "pgserver.h"

struct pgserver_bpf;

namespace sp::bpf {

class PgServerProbe : public agent::PgServerKernel {
 public:
  static std::unique_ptr<PgServerProbe> create(std::string& error);
  ~PgServerProbe();
  PgServerProbe(const PgServerProbe&) = delete;
  PgServerProbe& operator=(const PgServerProbe&) = delete;

  // Attaches every probe to `binary_path` (a path the agent can open, e.g. /proc/PID/root/usr/lib/.../postgres) in
  // process `pid` (as the agent's PID namespace numbers it; -1: every process). All-or-nothing.
  bool attach(int pid, const std::string& binary_path, std::string& error) override;
  // Hands the backend's links to a thread of its own that closes them (each close waits for an RCU grace period):
  // the scanning thread does not wait.
  void detach(int pid) override;
  bool attached(int pid) const override { return links_.count(pid) != 0; }
  std::size_t attached_count() const override { return links_.size(); }

  int drain(const std::function<void(const pgs_query_event&)>& fn) override { return ring_.drain(fn); }
  int drain_locks(const std::function<void(const pgs_lock_event&)>& fn) override { return lock_ring_.drain(fn); }
  int ring_fd() const { return ring_.fd(); }
  int lock_ring_fd() const { return lock_ring_.fd(); }
  std::vector<int> ring_fds() const override { return {ring_.fd(), lock_ring_.fd()}; }
  std::vector<std::pair<std::uint32_t, pgs_backend_stats>> read_backends() const override;
  void erase_backend(int tgid) override;
  std::uint64_t events_lost() const override;
  std::uint64_t hook_misses() const override;  // see recursion_misses()

 private:
  PgServerProbe() = default;
  // A backend's USDT links, and the uprobe fds under them (perf events and their BPF links), for the shutdown.
  struct Attached {
    std::vector<Link> links;
    std::vector<int> fds;
  };
  Skeleton<pgserver_bpf> skel_;
  TypedRing<pgs_query_event, offsetof(pgs_query_event, text)> ring_;  // records end at their text's NUL
  TypedRing<pgs_lock_event> lock_ring_;
  std::map<int, Attached> links_;  // by process
  void reap();                     // the reaper thread's loop
  std::mutex libbpf_mutex_;        // libbpf's USDT bookkeeping (spec slots) is not thread-safe: attach vs reaper
  std::mutex reap_mutex_;          // guards what follows
  std::condition_variable reap_cv_;
  std::deque<Attached> reap_queue_;
  bool stopping_ = false;
  std::thread reaper_;
};

}  // namespace sp::bpf
