#include "probes/nvme_family.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>

#include "probes/libbpf_setup.h"
#include "probes/map_util.h"
#include "core/model/io_stats.h"
#include "core/util/log.h"
#include "nvme.skel.h"

static_assert(sizeof(sp_nvme_key) == 12);
static_assert(sizeof(sp_nvme_hist) == 8 * (SP_IO_BUCKETS + 2));

namespace sp::bpf {

bool kernel_has_nvme_tracepoints(std::string& why) {
  constexpr const char* kType = "btf_trace_nvme_complete_rq";
  if (btf* vmlinux = btf__load_vmlinux_btf()) {
    bool built_in = btf__find_by_name_kind(vmlinux, kType, BTF_KIND_TYPEDEF) >= 0;
    bool in_module = false;
    if (!built_in && access("/sys/kernel/btf/nvme_core", R_OK) == 0) {
      if (btf* mod = btf__parse_split("/sys/kernel/btf/nvme_core", vmlinux)) {
        in_module = btf__find_by_name_kind(mod, kType, BTF_KIND_TYPEDEF) >= 0;
        btf__free(mod);
      }
    }
    btf__free(vmlinux);
    if (built_in || in_module) return true;
  }
  why = access("/sys/module/nvme_core", F_OK) == 0
            ? "the nvme driver is loaded but its tracepoints are not in the kernel's BTF (no nvme_core module BTF)"
            : "no nvme driver on this machine (nvme_core is neither built in nor loaded)";
  return false;
}

bool nvme_programs_verify(std::string& error) {
  Skeleton<nvme_bpf> skel(nvme_bpf__open());
  if (!skel) {
    error = "open BPF object nvme: " + errno_text(errno);
    return false;
  }
  bpf_program__set_autoload(skel->progs.nvme_setup_btf, false);
  bpf_program__set_autoload(skel->progs.nvme_complete_btf, false);
  int err = nvme_bpf__load(skel.get());
  if (err) error = "load BPF object nvme (raw_tp): " + errno_text(err);
  return err == 0;
}

NvmeFamily::NvmeFamily(std::string sys_root, std::vector<std::string> device_globs)
    : sys_root_(std::move(sys_root)), device_globs_(std::move(device_globs)) {}

NvmeFamily::~NvmeFamily() = default;

bool NvmeFamily::start(std::string& error) {
  if (!kernel_has_nvme_tracepoints(error)) {
    why_not_ = error;
    return false;
  }
  for (bool btf : {true, false}) {
    skel_.reset(nvme_bpf__open());
    if (!skel_) {
      error = "open BPF object nvme: " + errno_text(errno);
      break;
    }
    auto* progs = &skel_->progs;
    bpf_program__set_autoload(progs->nvme_setup_btf, btf);
    bpf_program__set_autoload(progs->nvme_complete_btf, btf);
    bpf_program__set_autoload(progs->nvme_setup_raw, !btf);
    bpf_program__set_autoload(progs->nvme_complete_raw, !btf);
    const char* variant = btf ? "tp_btf" : "raw_tp";
    if (int err = nvme_bpf__load(skel_.get())) {
      error = fmt::format("load BPF object nvme ({}): {}", variant, errno_text(err));
      log::debug("{}", error);
      skel_.reset();
      continue;
    }
    if (int err = nvme_bpf__attach(skel_.get())) {
      error = fmt::format("attach nvme tracepoints ({}): {}", variant, errno_text(err));
      skel_.reset();
      break;
    }
    hooks_ = fmt::format("{}: nvme_setup_cmd, nvme_complete_rq", variant);
    why_not_.clear();
    log::info("nvme: attached ({})", hooks_);
    return true;
  }
  why_not_ = error;
  return false;
}

void NvmeFamily::poll() {
  if (!skel_) return;
  auto raw = hash_entries<sp_nvme_key, sp_nvme_hist>(skel_->maps.nvme_hist);
  std::uint64_t untracked = percpu_sum(skel_->maps.nvme_stats, SP_NVME_STAT_UNTRACKED);
  std::lock_guard lock(mutex_);
  raw_ = std::move(raw);
  untracked_ = untracked;
}

std::uint64_t NvmeFamily::hook_misses() const { return skel_ ? recursion_misses(skel_->obj) : 0; }

NvmeSnapshot NvmeFamily::snapshot() const {
  NvmeSnapshot snap;
  snap.active = skel_ != nullptr;
  snap.why_not = why_not_;
  snap.hooks = hooks_;
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

}  // namespace sp::bpf
