// The GC family's kernel side as the family sees it: what userspace/probes/gc_probe.h does with the BPF object
// (bpf/gc.bpf.c), as an interface that unit tests implement with a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gc.h"

namespace sp::agent {

enum class GcAttachMethod { Usdt, Uprobe };

struct GcAttachSpec {
  int host_pid = 0;
  std::string binary_path;     // a path the agent can open: /proc/PID/root/<path from the target's maps>
  GcAttachMethod method = GcAttachMethod::Usdt;
  std::uint64_t func_offset = 0;  // file offset of the collection function (Uprobe)
  gc_target target{};          // how to read generation and collected count in this process
  std::string description;     // for messages: "worker synchrotron1 (pid 42)"
};

struct GcHistEntry {
  gc_hist_key key;
  gc_hist value;
};

class GcKernel {
 public:
  virtual ~GcKernel() = default;
  // Attaches to one process. On failure nothing stays attached and `error` names the operation and the object.
  virtual bool attach(const GcAttachSpec& spec, std::string& error) = 0;
  // Releases the process's probes (its histogram entries stay until erase_hist()).
  virtual void detach(int host_pid) = 0;
  virtual std::vector<GcHistEntry> read_hist() const = 0;
  virtual void erase_hist(int host_pid) = 0;
  // Consumes every per-pause record, calling `fn` for each; returns how many.
  virtual int drain(const std::function<void(const gc_event&)>& fn) = 0;
  virtual int ring_fd() const = 0;
  virtual std::uint64_t events_lost() const = 0;
  virtual std::uint64_t hook_misses() const = 0;
};

// Loads the kernel side; nullptr with `error` when the kernel refuses.
using GcKernelOpener = std::function<std::unique_ptr<GcKernel>(std::string& error)>;

}  // namespace sp::agent
