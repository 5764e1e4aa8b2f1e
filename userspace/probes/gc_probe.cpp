#include "probes/gc_probe.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "probes/map_util.h"
#include "probes/pid_namespace_config.h"
#include "core/util/log.h"
#include "gc.skel.h"

static_assert(sizeof(gc_target) == 16);
static_assert(sizeof(gc_hist_key) == 8);
static_assert(sizeof(gc_hist) == 8 * (SP_LAT_BUCKETS + 4));
static_assert(sizeof(gc_event) == 40);

namespace sp::bpf {

// Members go in reverse order: links (detach), ring buffer, then the object.
GcProbe::~GcProbe() = default;

std::unique_ptr<GcProbe> GcProbe::create(std::string& error) {
  std::unique_ptr<GcProbe> p(new GcProbe());
  p->skel_.reset(gc_bpf__open());
  if (!p->skel_) {
    error = "open BPF object gc: " + errno_text(errno);
    return nullptr;
  }
  configure_pid_ns(p->skel_.get());
  if (int err = gc_bpf__load(p->skel_.get())) {
    error = "load BPF object gc: " + errno_text(err);
    return nullptr;
  }
  if (!p->ring_.open(p->skel_->maps.gc_events, error)) return nullptr;
  return p;
}

bool GcProbe::attach(const GcAttachSpec& spec, std::string& error) {
  detach(spec.host_pid);
  __u32 key = static_cast<__u32>(spec.host_pid);
  if (bpf_map__update_elem(skel_->maps.gc_targets, &key, sizeof key, &spec.target, sizeof spec.target, BPF_ANY)) {
    error = fmt::format("register gc target {}: {}", spec.description, errno_text(errno));
    return false;
  }
  std::vector<Link> links;
  auto fail = [&](const std::string& what) {
    int err = errno;
    error = fmt::format("attach {} {} for {}: {}", what, spec.binary_path, spec.description, errno_text(err));
    if (err == EPERM || err == EACCES) error += " (uprobes need CAP_SYS_ADMIN on this kernel)";
    links.clear();
    bpf_map__delete_elem(skel_->maps.gc_targets, &key, sizeof key, 0);
    return false;
  };
  if (spec.method == GcAttachMethod::Usdt) {
    Link start(bpf_program__attach_usdt(skel_->progs.gc_usdt_start, spec.host_pid, spec.binary_path.c_str(), "python",
                                        "gc__start", nullptr));
    if (!start) return fail("USDT python:gc__start in");
    links.push_back(std::move(start));
    Link done(bpf_program__attach_usdt(skel_->progs.gc_usdt_done, spec.host_pid, spec.binary_path.c_str(), "python",
                                       "gc__done", nullptr));
    if (!done) return fail("USDT python:gc__done in");
    links.push_back(std::move(done));
  } else {
    auto off = static_cast<size_t>(spec.func_offset);
    Link entry(bpf_program__attach_uprobe(skel_->progs.gc_func_entry, false, spec.host_pid,
                                          spec.binary_path.c_str(), off));
    if (!entry) return fail(fmt::format("uprobe at offset {:#x} of", spec.func_offset));
    links.push_back(std::move(entry));
    Link ret(bpf_program__attach_uprobe(skel_->progs.gc_func_return, true, spec.host_pid, spec.binary_path.c_str(),
                                        off));
    if (!ret) return fail(fmt::format("uretprobe at offset {:#x} of", spec.func_offset));
    links.push_back(std::move(ret));
  }
  links_[spec.host_pid] = std::move(links);
  return true;
}

void GcProbe::detach(int host_pid) {
  auto it = links_.find(host_pid);
  if (it == links_.end()) return;
  links_.erase(it);
  __u32 key = static_cast<__u32>(host_pid);
  bpf_map__delete_elem(skel_->maps.gc_targets, &key, sizeof key, 0);
}

std::vector<GcHistEntry> GcProbe::read_hist() const {
  std::vector<GcHistEntry> out;
  for (const auto& [k, v] : hash_entries<gc_hist_key, gc_hist>(skel_->maps.gc_hist)) out.push_back({k, v});
  return out;
}

void GcProbe::erase_hist(int host_pid) {
  int fd = bpf_map__fd(skel_->maps.gc_hist);
  for (const auto& e : read_hist()) {
    if (e.key.tgid == static_cast<__u32>(host_pid)) bpf_map_delete_elem(fd, &e.key);
  }
}

int GcProbe::drain(const std::function<void(const gc_event&)>& fn) { return ring_.drain(fn); }

std::uint64_t GcProbe::stat(int idx) const { return percpu_sum(skel_->maps.gc_stats, static_cast<std::uint32_t>(idx)); }

std::uint64_t GcProbe::events_lost() const { return stat(SP_GC_STAT_EVENTS_LOST); }
std::uint64_t GcProbe::unmatched_ends() const { return stat(SP_GC_STAT_UNMATCHED); }

std::uint64_t GcProbe::hook_misses() const { return recursion_misses(skel_->obj); }

}  // namespace sp::bpf
