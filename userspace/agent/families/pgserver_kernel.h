// The PostgreSQL server-side family's kernel side as the family sees it: what userspace/probes/pgserver_probe.h does
// with the BPF object (bpf/pgserver.bpf.c), as an interface that unit tests implement with a fake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pgserver.h"

namespace sp::agent {

class PgServerKernel {
 public:
  virtual ~PgServerKernel() = default;
  // Attaches every probe to `binary_path` (a path the agent can open, the binary backend `pid` runs) in process
  // `pid` only: the kernel writes the breakpoints into that process's memory, so no other backend traps. All or
  // nothing. `pid` -1: every process running the binary (benchmarks only).
  virtual bool attach(int pid, const std::string& binary_path, std::string& error) = 0;
  virtual void detach(int pid) = 0;
  virtual bool attached(int pid) const = 0;
  virtual std::size_t attached_count() const = 0;
  virtual int drain(const std::function<void(const pgs_query_event&)>& fn) = 0;
  virtual int drain_locks(const std::function<void(const pgs_lock_event&)>& fn) = 0;
  virtual std::vector<int> ring_fds() const = 0;
  // Per backend, counted in the kernel: lock waits, transaction outcomes, statements whose record was lost.
  virtual std::vector<std::pair<std::uint32_t, pgs_backend_stats>> read_backends() const = 0;
  virtual void erase_backend(int tgid) = 0;
  virtual std::uint64_t events_lost() const = 0;
  virtual std::uint64_t hook_misses() const = 0;
};

using PgServerKernelOpener = std::function<std::unique_ptr<PgServerKernel>(std::string& error)>;

}  // namespace sp::agent
