// The libpq family's kernel side as the family sees it: what userspace/probes/libpq_probe.h does with the BPF object
// (bpf/libpq.bpf.c), as an interface that unit tests implement with a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "libpq.h"

namespace sp::agent {

struct LibpqAttachSpec {
  int host_pid = 0;
  std::string libpq_path;   // a path the agent can open: /proc/PID/root/<path from the target's maps>
  bool async = true;        // also the PQsendQuery* / PQgetResult probes (extra traps on every query)
  std::string description;  // for messages: "worker synchrotron1 (pid 42)"
};

class LibpqKernel {
 public:
  virtual ~LibpqKernel() = default;
  // All-or-nothing: on failure nothing stays attached and `error` names the function, the file and the worker.
  virtual bool attach(const LibpqAttachSpec& spec, std::string& error) = 0;
  virtual void detach(int host_pid) = 0;
  // Turns desc attribution on for one attached process (its CPython's offsets and addresses).
  virtual bool set_python(int host_pid, const pq_py_proc& settings, std::string& error) = 0;
  virtual int drain(const std::function<void(const pq_event&)>& fn) = 0;
  virtual int ring_fd() const = 0;
  // Per process: calls whose record the ring buffer could not take (counted in the kernel, exact).
  virtual std::vector<std::pair<std::uint32_t, pq_lost>> read_lost() const = 0;
  virtual void erase_lost(int host_pid) = 0;
  virtual std::uint64_t events_lost() const = 0;
  virtual std::uint64_t hook_misses() const = 0;
};

using LibpqKernelOpener = std::function<std::unique_ptr<LibpqKernel>(std::string& error)>;

}  // namespace sp::agent
