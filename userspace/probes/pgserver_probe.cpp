#include "probes/pgserver_probe.h"

#include <fmt/core.h>

#include <cerrno>

#include "probes/pid_namespace_config.h"
#include "pgserver.skel.h"

static_assert(sizeof(pgs_query_event) == 24 + SP_PGS_TEXT_MAX);
static_assert(sizeof(pgs_lock_event) == 24);
static_assert(sizeof(pgs_backend_stats) == 8 * (2 * SP_LAT_BUCKETS + 6));

namespace sp::bpf {

// Members go in reverse order: links (detach), ring buffer, then the object.
PgServerProbe::~PgServerProbe() = default;

std::unique_ptr<PgServerProbe> PgServerProbe::create(std::string& error) {
  std::unique_ptr<PgServerProbe> p(new PgServerProbe());
  p->skel_.reset(pgserver_bpf__open());
  if (!p->skel_) {
    error = "open BPF object pgserver: " + errno_text(errno);
    return nullptr;
  }
  configure_pid_ns(p->skel_.get());
  if (int err = pgserver_bpf__load(p->skel_.get())) {
    error = "load BPF object pgserver: " + errno_text(err);
    return nullptr;
  }
  if (!p->ring_.open(p->skel_->maps.pgs_events, error)) return nullptr;
  if (!p->lock_ring_.open(p->skel_->maps.pgs_lock_events, error)) return nullptr;
  return p;
}

bool PgServerProbe::attach(int pid, const std::string& binary_path, std::string& error) {
  detach(pid);
  struct Point {
    const char* name;
    bpf_program* prog;
  };
  auto* progs = &skel_->progs;
  const Point points[] = {
      {"query__start", progs->pgs_query_start},         {"query__done", progs->pgs_query_done},
      {"lock__wait__start", progs->pgs_lock_wait_start}, {"lock__wait__done", progs->pgs_lock_wait_done},
      {"transaction__commit", progs->pgs_txn_commit},    {"transaction__abort", progs->pgs_txn_abort},
  };
  std::vector<Link> links;
  for (const auto& p : points) {
    // A PID: the uprobes are planted in that process only (the kernel filters by the target task's mm).
    Link link(bpf_program__attach_usdt(p.prog, pid, binary_path.c_str(), "postgresql", p.name, nullptr));
    if (!link) {
      int err = errno;
      error = fmt::format("attach USDT postgresql:{} in {} for backend {}: {}", p.name, binary_path, pid,
                          errno_text(err));
      if (err == ENOENT) error += " (is this PostgreSQL built with --enable-dtrace?)";
      if (err == EPERM || err == EACCES) error += " (uprobes need CAP_SYS_ADMIN on this kernel)";
      return false;
    }
    links.push_back(std::move(link));
  }
  links_[pid] = std::move(links);
  return true;
}

void PgServerProbe::detach(int pid) { links_.erase(pid); }

std::vector<std::pair<std::uint32_t, pgs_backend_stats>> PgServerProbe::read_backends() const {
  return hash_entries<std::uint32_t, pgs_backend_stats>(skel_->maps.pgs_backend);
}

void PgServerProbe::erase_backend(int tgid) {
  auto key = static_cast<std::uint32_t>(tgid);
  bpf_map__delete_elem(skel_->maps.pgs_backend, &key, sizeof key, 0);
}

std::uint64_t PgServerProbe::events_lost() const { return percpu_sum(skel_->maps.pgs_stats, SP_PGS_STAT_EVENTS_LOST); }

std::uint64_t PgServerProbe::hook_misses() const { return recursion_misses(skel_->obj); }

}  // namespace sp::bpf
