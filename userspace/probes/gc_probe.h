// The GC probe family: one loaded BPF object (bpf/gc.bpf.c) shared by every traced process, with per-process links.
// attach() plants USDT probes or an uprobe/uretprobe pair in exactly one process (the kernel then traps only there);
// detach() releases them. Counts are read from the in-kernel histogram map; per-pause events come through a ring
// buffer drained on a timer by the caller (drain()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/families/gc_kernel.h"
#include "probes/handles.h"
#include "probes/map_util.h"
#include "gc.h"

struct gc_bpf;

namespace sp::bpf {

using agent::GcAttachMethod;
using agent::GcAttachSpec;
using agent::GcHistEntry;

class GcProbe : public agent::GcKernel {
 public:
  // Opens and loads the BPF object; nullptr with `error` set when the kernel refuses.
  static std::unique_ptr<GcProbe> create(std::string& error);
  ~GcProbe();
  GcProbe(const GcProbe&) = delete;
  GcProbe& operator=(const GcProbe&) = delete;

  // Attaches to one process. On failure nothing stays attached and `error` names the operation and the object.
  bool attach(const GcAttachSpec& spec, std::string& error) override;
  // Releases the process's probes and forgets its per-process state (histogram entries are left for the caller to
  // read one last time and then erase with erase_hist()).
  void detach(int host_pid) override;
  bool attached(int host_pid) const { return links_.count(host_pid) != 0; }

  std::vector<GcHistEntry> read_hist() const override;
  void erase_hist(int host_pid) override;

  // Consumes every event in the ring buffer, calling `fn` for each; returns how many.
  int drain(const std::function<void(const gc_event&)>& fn) override;
  int ring_fd() const override { return ring_.fd(); }
  std::uint64_t events_lost() const override;
  std::uint64_t hook_misses() const override;  // see recursion_misses()
  std::uint64_t unmatched_ends() const;

 private:
  GcProbe() = default;
  std::uint64_t stat(int idx) const;

  Skeleton<gc_bpf> skel_;
  TypedRing<gc_event> ring_;
  std::map<int, std::vector<Link>> links_;
};

}  // namespace sp::bpf
