// The block I/O probe family's BPF side: one object on the block layer's tracepoints (tp_btf where the kernel takes
// it, raw_tp otherwise, chosen by loading), counting per (process, disk, operation) in the kernel.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/families/blockio_kernel.h"
#include "probes/handles.h"
#include "probes/map_util.h"
#include "blockio.h"

struct blockio_bpf;

namespace sp::bpf {

// Whether the kernel has the block_io_start/done tracepoints (6.5+, where a request is created); older kernels
// attribute a request at insert or issue.
bool kernel_has_block_io_start();

class BlockIoProbe : public agent::BlockIoKernel {
 public:
  // Loads and attaches (system-wide: the block layer has no per-process attach). `hooks` describes what was used,
  // e.g. "tp_btf: block_io_start, block_rq_insert, block_rq_issue, block_rq_complete".
  // `force`: "tp_btf" or "raw_tp" to use only that variant (tests); empty: tp_btf, else raw_tp.
  static std::unique_ptr<BlockIoProbe> create(std::string& error, const std::string& force = {});
  ~BlockIoProbe();
  BlockIoProbe(const BlockIoProbe&) = delete;
  BlockIoProbe& operator=(const BlockIoProbe&) = delete;

  const std::string& hooks() const override { return hooks_; }
  std::vector<std::pair<sp_io_key, sp_io_hist>> read() const override;
  // Atomically reads and removes one entry (for processes that are not ours: folded into "other" in userspace).
  bool take(const sp_io_key& key, sp_io_hist& out) override;
  int drain(const std::function<void(const sp_io_event&)>& fn) override { return ring_.drain(fn); }
  int ring_fd() const override { return ring_.fd(); }
  std::uint64_t events_lost() const override;
  std::uint64_t stat(sp_io_stat which) const;  // one of the io_stats counters, summed over CPUs
  std::uint64_t hook_misses() const override;  // see recursion_misses()

 private:
  BlockIoProbe() = default;
  Skeleton<blockio_bpf> skel_;
  TypedRing<sp_io_event> ring_;
  std::string hooks_;
};

}  // namespace sp::bpf
