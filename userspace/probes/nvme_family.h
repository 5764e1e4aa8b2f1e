// NVMe command probes as the agent runs them: attached once, system-wide (the driver's tracepoints have no
// per-process attach), when the nvme driver is loaded; otherwise inactive with the reason, which `doctor` prints.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "probes/handles.h"
#include "core/model/nvme_stats.h"

struct nvme_bpf;

namespace sp::bpf {

// Whether this kernel has the nvme driver's tracepoints (in vmlinux or in a loaded module's BTF); `why` says what is
// missing when it does not.
bool kernel_has_nvme_tracepoints(std::string& why);

// Loads the raw_tp variant of the programs without attaching them (raw_tp programs name their tracepoint only at
// attach), so the verifier checks them on any kernel, with or without the driver. For tests and `doctor`.
bool nvme_programs_verify(std::string& error);

class NvmeFamily {
 public:
  NvmeFamily(std::string sys_root, std::vector<std::string> device_globs);
  ~NvmeFamily();

  // False (with the reason) when the driver's hooks are absent or do not load; the agent goes on without them.
  bool start(std::string& error);
  void poll();
  NvmeSnapshot snapshot() const;
  std::uint64_t hook_misses() const;

 private:
  std::string sys_root_;
  std::vector<std::string> device_globs_;
  Skeleton<nvme_bpf> skel_;
  std::string hooks_;
  std::string why_not_ = "not started";

  mutable std::mutex mutex_;
  std::vector<std::pair<sp_nvme_key, sp_nvme_hist>> raw_;
  std::uint64_t untracked_ = 0;
  mutable std::map<std::uint32_t, std::string> device_names_;
};

}  // namespace sp::bpf
