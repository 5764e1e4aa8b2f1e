#include "probes/nvme_probe.h"

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

NvmeProbe::~NvmeProbe() = default;

std::unique_ptr<NvmeProbe> NvmeProbe::create(std::string& error) {
  if (!kernel_has_nvme_tracepoints(error)) return nullptr;
  std::unique_ptr<NvmeProbe> p(new NvmeProbe());
  for (bool btf : {true, false}) {
    p->skel_.reset(nvme_bpf__open());
    if (!p->skel_) {
      error = "open BPF object nvme: " + errno_text(errno);
      break;
    }
    auto* progs = &p->skel_->progs;
    bpf_program__set_autoload(progs->nvme_setup_btf, btf);
    bpf_program__set_autoload(progs->nvme_complete_btf, btf);
    bpf_program__set_autoload(progs->nvme_setup_raw, !btf);
    bpf_program__set_autoload(progs->nvme_complete_raw, !btf);
    const char* variant = btf ? "tp_btf" : "raw_tp";
    if (int err = nvme_bpf__load(p->skel_.get())) {
      error = fmt::format("load BPF object nvme ({}): {}", variant, errno_text(err));
      log::debug("{}", error);
      p->skel_.reset();
      continue;
    }
    if (int err = nvme_bpf__attach(p->skel_.get())) {
      error = fmt::format("attach nvme tracepoints ({}): {}", variant, errno_text(err));
      p->skel_.reset();
      break;
    }
    p->hooks_ = fmt::format("{}: nvme_setup_cmd, nvme_complete_rq", variant);
    log::info("nvme: attached ({})", p->hooks_);
    return p;
  }
  return nullptr;
}

std::vector<std::pair<sp_nvme_key, sp_nvme_hist>> NvmeProbe::read() const {
  return hash_entries<sp_nvme_key, sp_nvme_hist>(skel_->maps.nvme_hist);
}

std::uint64_t NvmeProbe::untracked() const { return percpu_sum(skel_->maps.nvme_stats, SP_NVME_STAT_UNTRACKED); }

std::uint64_t NvmeProbe::hook_misses() const { return recursion_misses(skel_->obj); }

}  // namespace sp::bpf
