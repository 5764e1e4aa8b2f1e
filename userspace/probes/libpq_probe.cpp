#include "probes/libpq_probe.h"

#include <fmt/core.h>

#include <cerrno>

#include "probes/pid_namespace_config.h"
#include "libpq.skel.h"

static_assert(sizeof(pq_event) == 48 + SP_PY_DESC_MAX + SP_PQ_TEXT_MAX);
static_assert(sizeof(pq_py_proc) == 120);
static_assert(sizeof(pq_lost) == 8 * (SP_LAT_BUCKETS + 2));

namespace sp::bpf {

// Members go in reverse order: links (detach), ring buffer, then the object.
LibpqProbe::~LibpqProbe() = default;

std::unique_ptr<LibpqProbe> LibpqProbe::create(std::string& error) {
  std::unique_ptr<LibpqProbe> p(new LibpqProbe());
  p->skel_.reset(libpq_bpf__open());
  if (!p->skel_) {
    error = "open BPF object libpq: " + errno_text(errno);
    return nullptr;
  }
  configure_pid_ns(p->skel_.get());
  if (int err = libpq_bpf__load(p->skel_.get())) {
    error = "load BPF object libpq: " + errno_text(err);
    return nullptr;
  }
  if (!p->ring_.open(p->skel_->maps.pq_events, error)) return nullptr;
  return p;
}

bool LibpqProbe::attach(const LibpqAttachSpec& spec, std::string& error) {
  detach(spec.host_pid);
  struct Point {
    const char* function;
    bpf_program* prog;
    bool retprobe;
  };
  auto* progs = &skel_->progs;
  std::vector<Point> points = {
      {"PQexec", progs->pq_exec, false},
      {"PQexec", progs->pq_sync_return, true},
      {"PQexecParams", progs->pq_exec_params, false},
      {"PQexecParams", progs->pq_sync_return, true},
      {"PQexecPrepared", progs->pq_exec_prepared, false},
      {"PQexecPrepared", progs->pq_sync_return, true},
      {"PQprepare", progs->pq_prepare, false},
      {"PQprepare", progs->pq_sync_return, true},
  };
  if (spec.async) {
    points.insert(points.end(), {
                                    {"PQsendQuery", progs->pq_send_query, false},
                                    {"PQsendQueryParams", progs->pq_send_query, false},
                                    {"PQsendPrepare", progs->pq_send_prepare, false},
                                    {"PQsendQueryPrepared", progs->pq_send_query_prepared, false},
                                    {"PQgetResult", progs->pq_get_result_return, true},
                                });
  }
  std::vector<Link> links;
  for (const auto& p : points) {
    bpf_uprobe_opts opts{};
    opts.sz = sizeof opts;
    opts.func_name = p.function;
    opts.retprobe = p.retprobe;
    Link link(bpf_program__attach_uprobe_opts(p.prog, spec.host_pid, spec.libpq_path.c_str(), 0, &opts));
    if (!link) {
      int err = errno;
      error = fmt::format("attach {} {}:{} for {}: {}", p.retprobe ? "uretprobe" : "uprobe", spec.libpq_path,
                          p.function, spec.description, errno_text(err));
      if (err == EPERM || err == EACCES) error += " (uprobes need CAP_SYS_ADMIN on this kernel)";
      return false;  // `links` releases what was attached so far
    }
    links.push_back(std::move(link));
  }
  links_[spec.host_pid] = std::move(links);
  return true;
}

void LibpqProbe::detach(int host_pid) {
  links_.erase(host_pid);
  clear_python(host_pid);
}

bool LibpqProbe::set_python(int host_pid, const pq_py_proc& settings, std::string& error) {
  auto key = static_cast<std::uint32_t>(host_pid);
  if (bpf_map__update_elem(skel_->maps.pq_py, &key, sizeof key, &settings, sizeof settings, BPF_ANY) != 0) {
    error = fmt::format("set Python offsets for pid {}: {}", host_pid, errno_text(errno));
    return false;
  }
  return true;
}

void LibpqProbe::clear_python(int host_pid) {
  auto key = static_cast<std::uint32_t>(host_pid);
  bpf_map__delete_elem(skel_->maps.pq_py, &key, sizeof key, 0);
}

std::vector<std::pair<std::uint32_t, pq_lost>> LibpqProbe::read_lost() const {
  return hash_entries<std::uint32_t, pq_lost>(skel_->maps.pq_lost);
}

void LibpqProbe::erase_lost(int host_pid) {
  auto key = static_cast<std::uint32_t>(host_pid);
  bpf_map__delete_elem(skel_->maps.pq_lost, &key, sizeof key, 0);
}

std::uint64_t LibpqProbe::events_lost() const { return percpu_sum(skel_->maps.pq_stats, SP_PQ_STAT_EVENTS_LOST); }
std::uint64_t LibpqProbe::unmatched_returns() const { return percpu_sum(skel_->maps.pq_stats, SP_PQ_STAT_UNMATCHED); }
std::uint64_t LibpqProbe::thread_states_by_tss() const { return percpu_sum(skel_->maps.pq_stats, SP_PQ_STAT_PY_TSS); }
std::uint64_t LibpqProbe::thread_states_by_list() const {
  return percpu_sum(skel_->maps.pq_stats, SP_PQ_STAT_PY_LIST);
}

std::uint64_t LibpqProbe::hook_misses() const { return recursion_misses(skel_->obj); }

}  // namespace sp::bpf
