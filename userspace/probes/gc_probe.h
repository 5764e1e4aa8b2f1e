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

#include "probes/handles.h"
#include "probes/map_util.h"
#include "gc.h"

struct gc_bpf;

namespace sp::bpf {

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

class GcProbe {
 public:
  // Opens and loads the BPF object; nullptr with `error` set when the kernel refuses.
  static std::unique_ptr<GcProbe> create(std::string& error);
  ~GcProbe();
  GcProbe(const GcProbe&) = delete;
  GcProbe& operator=(const GcProbe&) = delete;

  // Attaches to one process. On failure nothing stays attached and `error` names the operation and the object.
  bool attach(const GcAttachSpec& spec, std::string& error);
  // Releases the process's probes and forgets its per-process state (histogram entries are left for the caller to
  // read one last time and then erase with erase_hist()).
  void detach(int host_pid);
  bool attached(int host_pid) const { return links_.count(host_pid) != 0; }

  std::vector<GcHistEntry> read_hist() const;
  void erase_hist(int host_pid);

  // Consumes every event in the ring buffer, calling `fn` for each; returns how many.
  int drain(const std::function<void(const gc_event&)>& fn);
  int ring_fd() const { return ring_.fd(); }
  std::uint64_t events_lost() const;
  std::uint64_t hook_misses() const;  // see recursion_misses()
  std::uint64_t unmatched_ends() const;

 private:
  GcProbe() = default;
  std::uint64_t stat(int idx) const;

  Skeleton<gc_bpf> skel_;
  TypedRing<gc_event> ring_;
  std::map<int, std::vector<Link>> links_;
};

}  // namespace sp::bpf
