#include "probes/blockio_probe.h"

#include <bpf/btf.h>
#include <fmt/core.h>

#include <cerrno>

#include "probes/pid_namespace_config.h"
#include "blockio.skel.h"
#include "core/util/log.h"

static_assert(sizeof(sp_io_key) == 16);
static_assert(sizeof(sp_io_hist) == 8 * (2 * SP_IO_BUCKETS + 5));
static_assert(sizeof(sp_io_event) == 40);

namespace sp::bpf {
namespace {


}  // namespace

bool kernel_has_block_io_start() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return false;
  bool has = btf__find_by_name_kind(vmlinux, "btf_trace_block_io_start", BTF_KIND_TYPEDEF) >= 0;
  btf__free(vmlinux);
  return has;
}

// Members go in reverse order: ring buffer, then the object (whose destruction detaches the programs).
BlockIoProbe::~BlockIoProbe() = default;

std::unique_ptr<BlockIoProbe> BlockIoProbe::create(std::string& error, const std::string& force) {
  const bool io_start = kernel_has_block_io_start();
  std::string last_error = "no hook variant selected";
  for (bool btf : {true, false}) {
    if (!force.empty() && force != (btf ? "tp_btf" : "raw_tp")) continue;
    std::unique_ptr<BlockIoProbe> p(new BlockIoProbe());
    p->skel_.reset(blockio_bpf__open());
    if (!p->skel_) {
      error = "open BPF object blockio: " + errno_text(errno);
      return nullptr;
    }
    auto* progs = &p->skel_->progs;
    struct Variant {
      bpf_program* prog;
      bool btf;
      bool needs_io_start;
    };
    const Variant variants[] = {
        {progs->io_start_btf, true, true},     {progs->rq_insert_btf, true, false},
        {progs->rq_issue_btf, true, false},    {progs->rq_complete_btf, true, false},
        {progs->rq_merge_btf, true, false},    {progs->io_start_raw, false, true},
        {progs->rq_insert_raw, false, false},  {progs->rq_issue_raw, false, false},
        {progs->rq_complete_raw, false, false}, {progs->rq_merge_raw, false, false},
        {progs->rq_requeue_btf, true, false},  {progs->rq_requeue_raw, false, false},
    };
    for (const auto& v : variants) bpf_program__set_autoload(v.prog, v.btf == btf && (io_start || !v.needs_io_start));
    configure_pid_ns(p->skel_.get());
    p->skel_->rodata->sp_have_io_start = io_start;
    if (int err = blockio_bpf__load(p->skel_.get())) {
      last_error = fmt::format("load BPF object blockio ({}): {}", btf ? "tp_btf" : "raw_tp", errno_text(err));
      log::debug("{}", last_error);
      continue;  // try the other variant
    }
    if (int err = blockio_bpf__attach(p->skel_.get())) {
      error = fmt::format("attach block I/O tracepoints ({}): {}", btf ? "tp_btf" : "raw_tp", errno_text(err));
      return nullptr;
    }
    if (!p->ring_.open(p->skel_->maps.io_events, error)) return nullptr;
    p->hooks_ = fmt::format("{}: {}block_rq_insert, block_rq_issue, block_rq_complete, block_rq_merge, block_rq_requeue",
                            btf ? "tp_btf" : "raw_tp",
                            io_start ? "block_io_start, " : "");
    return p;
  }
  error = last_error;
  return nullptr;
}

std::vector<std::pair<sp_io_key, sp_io_hist>> BlockIoProbe::read() const {
  return hash_entries<sp_io_key, sp_io_hist>(skel_->maps.io_hist);
}

bool BlockIoProbe::take(const sp_io_key& key, sp_io_hist& out) {
  return bpf_map_lookup_and_delete_elem(bpf_map__fd(skel_->maps.io_hist), &key, &out) == 0;
}


std::uint64_t BlockIoProbe::events_lost() const { return stat(SP_IO_STAT_EVENTS_LOST); }

std::uint64_t BlockIoProbe::stat(sp_io_stat which) const { return percpu_sum(skel_->maps.io_stats, which); }

std::uint64_t BlockIoProbe::hook_misses() const { return recursion_misses(skel_->obj); }

}  // namespace sp::bpf
