// The block I/O family's kernel side as the family sees it: what userspace/probes/blockio_probe.h does with the BPF
// object (bpf/blockio.bpf.c), as an interface that unit tests implement with a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "blockio.h"

namespace sp::agent {

class BlockIoKernel {
 public:
  virtual ~BlockIoKernel() = default;
  // Which tracepoints are in use, e.g. "tp_btf: block_io_start, block_rq_insert, block_rq_issue, ...".
  virtual const std::string& hooks() const = 0;
  // Every per-(process, disk, op) entry the kernel counts.
  virtual std::vector<std::pair<sp_io_key, sp_io_hist>> read() const = 0;
  // Reads and removes one entry in one step (a request completing in between cannot slip through).
  virtual bool take(const sp_io_key& key, sp_io_hist& out) = 0;
  virtual int drain(const std::function<void(const sp_io_event&)>& fn) = 0;
  virtual int ring_fd() const = 0;
  virtual std::uint64_t events_lost() const = 0;
  virtual std::uint64_t hook_misses() const = 0;
};

using BlockIoKernelOpener = std::function<std::unique_ptr<BlockIoKernel>(std::string& error)>;

}  // namespace sp::agent
