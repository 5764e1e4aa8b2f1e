#include "probes/pgserver_probe.h"

#include <fmt/core.h>

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <string_view>
#include <thread>

#include "probes/pid_namespace_config.h"
#include "pgserver.skel.h"

static_assert(sizeof(pgs_query_event) == 24 + SP_PGS_TEXT_MAX);
static_assert(sizeof(pgs_lock_event) == 24);
static_assert(sizeof(pgs_backend_stats) == 8 * (2 * SP_LAT_BUCKETS + 6));

namespace sp::bpf {

namespace {

// The agent's open fds (numbers only: no readlink for each of the hundreds of uprobe fds of 50 backends).
std::set<int> open_fds() {
  std::set<int> out;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    const int fd = atoi(e->d_name);
    if (fd > 2 && fd != dirfd(dir)) out.insert(fd);
  }
  closedir(dir);
  return out;
}

// Whether `fd` is a uprobe's perf event or the BPF link over one.
bool is_uprobe_fd(int fd) {
  char target[64];
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
  if (n <= 0) return false;
  const std::string_view t(target, static_cast<std::size_t>(n));
  return t == "anon_inode:[perf_event]" || t == "anon_inode:bpf_link";
}

// Closes `fds` on up to 64 threads at once. The last close of a uprobe waits for an RCU tasks-trace grace period
// (0.1-0.2 s each on this VM under load): one after another, six per backend, an agent attached to 50 backends needed
// a minute to exit; in parallel the grace periods overlap.
void close_in_parallel(const std::vector<int>& fds) {
  const std::size_t n = std::min<std::size_t>(fds.size(), 64);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < n; ++t) {
    threads.emplace_back([&fds, t, n] {
      for (std::size_t i = t; i < fds.size(); i += n) ::close(fds[i]);
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace

// The reaper stopped, the links (their uprobes' fds closed in parallel), then the ring buffers, then the object.
PgServerProbe::~PgServerProbe() {
  {
    std::lock_guard lock(reap_mutex_);
    stopping_ = true;
  }
  reap_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::vector<int> fds;
  auto let_go = [&](Attached& a) {
    // Disconnected, libbpf frees a USDT link without closing its uprobes (and without returning its spec slots to
    // the object, which is going away): their fds are closed below.
    for (auto& link : a.links) bpf_link__disconnect(link.get());
    a.links.clear();
    fds.insert(fds.end(), a.fds.begin(), a.fds.end());
  };
  for (auto& [pid, a] : links_) let_go(a);
  for (auto& a : reap_queue_) let_go(a);
  links_.clear();
  reap_queue_.clear();
  close_in_parallel(fds);
}

void PgServerProbe::reap() {
  std::unique_lock lock(reap_mutex_);
  for (;;) {
    reap_cv_.wait(lock, [&] { return stopping_ || !reap_queue_.empty(); });
    if (stopping_) return;  // the destructor closes what is left, in parallel
    Attached a = std::move(reap_queue_.front());
    reap_queue_.pop_front();
    lock.unlock();
    for (auto& link : a.links) {
      std::lock_guard libbpf(libbpf_mutex_);
      link.reset();
    }
    lock.lock();
  }
}

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
  std::lock_guard libbpf(libbpf_mutex_);
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
  Attached a;
  const std::set<int> before = open_fds();
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
    a.links.push_back(std::move(link));
  }
  // Uprobe fds are opened only here, under libbpf_mutex_: those opened meanwhile are these links'. (One another
  // thread closed and this attach reused is missed: the exit closes it, after the others.)
  for (int fd : open_fds()) {
    if (!before.count(fd) && is_uprobe_fd(fd)) a.fds.push_back(fd);
  }
  links_[pid] = std::move(a);
  return true;
}

void PgServerProbe::detach(int pid) {
  auto it = links_.find(pid);
  if (it == links_.end()) return;
  {
    std::lock_guard lock(reap_mutex_);
    reap_queue_.push_back(std::move(it->second));
    if (!reaper_.joinable()) reaper_ = std::thread([this] { reap(); });
  }
  links_.erase(it);
  reap_cv_.notify_one();
}

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
