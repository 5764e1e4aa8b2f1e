// The NVMe command family: per disk, queue, opcode and status, from the nvme driver's tracepoints when it is loaded;
// otherwise off with the reason, which `doctor` prints. Nothing per worker: the driver sees commands, not processes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "agent/families/nvme_kernel.h"
#include "agent/families/kernel_family.h"
#include "core/model/nvme_stats.h"

namespace sp::agent {

class NvmeFamily : public KernelFamily<NvmeKernel> {
 public:
  NvmeFamily(std::string sys_root, std::vector<std::string> device_globs, NvmeKernelOpener open);
  ~NvmeFamily() override;

  const char* name() const override { return "nvme"; }
  bool start(std::string& why_not) override;
  bool optional() const override { return true; }
  void update(const ScanResult&, const ScanDiff&) override {}
  void poll() override;
  void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override;

  NvmeSnapshot snapshot() const;

 private:
  std::string sys_root_;
  std::vector<std::string> device_globs_;
  std::string why_not_ = "not started";

  mutable std::mutex mutex_;
  std::vector<std::pair<sp_nvme_key, sp_nvme_hist>> raw_;
  std::uint64_t untracked_ = 0;
  mutable std::map<std::uint32_t, std::string> device_names_;
};

}  // namespace sp::agent
