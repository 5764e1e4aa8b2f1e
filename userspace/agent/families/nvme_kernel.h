// The NVMe family's kernel side as the family sees it: what userspace/probes/nvme_probe.h does with the BPF object
// (bpf/nvme.bpf.c), as an interface that unit tests implement with a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nvme.h"

namespace sp::agent {

class NvmeKernel {
 public:
  virtual ~NvmeKernel() = default;
  virtual const std::string& hooks() const = 0;  // "tp_btf: nvme_setup_cmd, nvme_complete_rq"
  virtual std::vector<std::pair<sp_nvme_key, sp_nvme_hist>> read() const = 0;
  virtual std::uint64_t untracked() const = 0;  // completions whose setup was not seen
  virtual std::uint64_t hook_misses() const = 0;
};

// Nullptr with `why_not` when the driver's tracepoints are absent or the programs do not load.
using NvmeKernelOpener = std::function<std::unique_ptr<NvmeKernel>(std::string& why_not)>;

}  // namespace sp::agent
