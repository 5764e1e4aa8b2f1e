// The libpq probe family's BPF side: one loaded object (bpf/libpq.bpf.c) shared by every traced worker, with
// per-process uprobes on the libpq each worker has mapped. Query records come through a ring buffer drained by the
// caller; records the ring buffer could not take are counted per process in the kernel (read_lost()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/families/libpq_kernel.h"
#include "probes/handles.h"
#include "probes/map_util.h"
#include "libpq.h"

struct libpq_bpf;

namespace sp::bpf {

using agent::LibpqAttachSpec;

class LibpqProbe : public agent::LibpqKernel {
 public:
  static std::unique_ptr<LibpqProbe> create(std::string& error);
  ~LibpqProbe();
  LibpqProbe(const LibpqProbe&) = delete;
  LibpqProbe& operator=(const LibpqProbe&) = delete;

  // All-or-nothing: on failure nothing stays attached and `error` names the function, the file and the worker.
  bool attach(const LibpqAttachSpec& spec, std::string& error) override;
  void detach(int host_pid) override;
  // Turns desc attribution on for one attached process (its CPython's offsets and addresses), or off.
  bool set_python(int host_pid, const pq_py_proc& settings, std::string& error) override;
  void clear_python(int host_pid);
  bool attached(int host_pid) const { return links_.count(host_pid) != 0; }

  int drain(const std::function<void(const pq_event&)>& fn) override { return ring_.drain(fn); }
  int ring_fd() const override { return ring_.fd(); }
  std::vector<std::pair<std::uint32_t, pq_lost>> read_lost() const override;
  void erase_lost(int host_pid) override;
  std::uint64_t events_lost() const override;
  std::uint64_t hook_misses() const override;  // see recursion_misses()
  std::uint64_t unmatched_returns() const;
  // How the frame walk found thread states: through the TSS key, and by walking the thread list.
  std::uint64_t thread_states_by_tss() const;
  std::uint64_t thread_states_by_list() const;

 private:
  LibpqProbe() = default;
  Skeleton<libpq_bpf> skel_;
  TypedRing<pq_event, offsetof(pq_event, text)> ring_;  // records end at their text's NUL
  std::map<int, std::vector<Link>> links_;
};

}  // namespace sp::bpf
