#include "agent/families/nvme_family.h"

#include "core/model/io_stats.h"
#include "exporter/probe_metrics.h"

namespace sp::agent {

NvmeFamily::NvmeFamily(std::string sys_root, std::vector<std::string> device_globs, NvmeKernelOpener open)
    : sys_root_(std::move(sys_root)), device_globs_(std::move(device_globs)), open_(std::move(open)) {}

NvmeFamily::~NvmeFamily() = default;

bool NvmeFamily::start(std::string& why_not) {
  kernel_ = open_(why_not);
  why_not_ = kernel_ ? "" : why_not;
  return kernel_ != nullptr;
}

void NvmeFamily::poll() {
  if (!kernel_) return;
  auto raw = kernel_->read();
  std::uint64_t untracked = kernel_->untracked();
  std::lock_guard lock(mutex_);
  raw_ = std::move(raw);
  untracked_ = untracked;
}

FamilyCounts NvmeFamily::counts() const {
  FamilyCounts c;  // no ring buffer: nothing to lose
  c.hook_misses = kernel_ ? kernel_->hook_misses() : 0;
  return c;
}

NvmeSnapshot NvmeFamily::snapshot() const {
  NvmeSnapshot snap;
  snap.active = kernel_ != nullptr;
  snap.why_not = why_not_;
  snap.hooks = kernel_ ? kernel_->hooks() : "";
  std::lock_guard lock(mutex_);
  snap.untracked = untracked_;
  auto name = [this](std::uint32_t dev) {
    auto it = device_names_.find(dev);
    if (it == device_names_.end()) it = device_names_.emplace(dev, block_device_name(sys_root_, dev)).first;
    return it->second;
  };
  auto keep = [this](const std::string& device) { return device_selected(device_globs_, device); };
  snap.series = decode_nvme(raw_, name, keep);
  return snap;
}

void NvmeFamily::collect(const HubSnapshot&, std::vector<prometheus::MetricFamily>& out) const {
  for (auto& f : exporter::nvme_metrics(snapshot())) out.push_back(std::move(f));
}

}  // namespace sp::agent
