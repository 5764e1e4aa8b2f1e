// NVMe command probes' BPF side: attached once, system-wide (the driver's tracepoints have no per-process attach),
// when the nvme driver is loaded (tp_btf where the kernel takes it, raw_tp otherwise).
#pragma once

#include <memory>
#include <string>

#include "agent/families/nvme_kernel.h"
#include "probes/handles.h"

struct nvme_bpf;

namespace sp::bpf {

// Whether this kernel has the nvme driver's tracepoints (in vmlinux or in a loaded module's BTF); `why` says what is
// missing when it does not.
bool kernel_has_nvme_tracepoints(std::string& why);

// Loads the raw_tp variant of the programs without attaching them (raw_tp programs name their tracepoint only at
// attach), so the verifier checks them on any kernel, with or without the driver. For tests and `doctor`.
bool nvme_programs_verify(std::string& error);

class NvmeProbe : public agent::NvmeKernel {
 public:
  // Nullptr with `why_not` when the driver's hooks are absent or do not load.
  static std::unique_ptr<NvmeProbe> create(std::string& why_not);
  ~NvmeProbe() override;
  NvmeProbe(const NvmeProbe&) = delete;
  NvmeProbe& operator=(const NvmeProbe&) = delete;

  const std::string& hooks() const override { return hooks_; }
  std::vector<std::pair<sp_nvme_key, sp_nvme_hist>> read() const override;
  std::uint64_t untracked() const override;
  std::uint64_t hook_misses() const override;

 private:
  NvmeProbe() = default;
  Skeleton<nvme_bpf> skel_;
  std::string hooks_;
};

}  // namespace sp::bpf
