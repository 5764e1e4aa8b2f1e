#include "probes/reactor_probe.h"

#include <fmt/core.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "core/util/log.h"
#include "probes/map_util.h"
#include "probes/pid_namespace_config.h"
#include "probes/tracepoint_ids.h"
#include "reactor.skel.h"

static_assert(sizeof(reactor_proc) == 8 * (SP_TICK_BUCKETS + 6));

namespace sp::bpf {
namespace {

#ifdef SYS_epoll_wait
constexpr long kNrEpollWait = SYS_epoll_wait;
#else
constexpr long kNrEpollWait = -1;  // e.g. arm64: epoll_pwait only
#endif
#ifdef SYS_epoll_pwait2
constexpr long kNrEpollPwait2 = SYS_epoll_pwait2;
#else
constexpr long kNrEpollPwait2 = -1;
#endif

// The per-syscall tracepoints' events, in the order of the per-syscall programs in create()'s hook list.
const std::vector<std::string> kEpollEvents = {
    "syscalls/sys_enter_epoll_wait",   "syscalls/sys_exit_epoll_wait",   "syscalls/sys_enter_epoll_pwait",
    "syscalls/sys_exit_epoll_pwait",   "syscalls/sys_enter_epoll_pwait2", "syscalls/sys_exit_epoll_pwait2",
};

}  // namespace

// Members go in reverse order: links (detach), then the object.
ReactorProbe::~ReactorProbe() = default;

std::unique_ptr<ReactorProbe> ReactorProbe::create(std::string& error, const std::string& force) {
  std::string last_error = "no hook variant selected";
  for (const std::string variant : {"syscalls", "raw_syscalls"}) {
    if (!force.empty() && force != variant) continue;
    const bool per_syscall = variant == "syscalls";
    // The per-syscall tracepoints' ids, asked first so that a host where they cannot be had takes raw_syscalls
    // without loading the other variant.
    std::vector<int> ids;
    std::string ids_source;
    if (per_syscall) {
      std::string why;
      auto found = tracepoint_ids(kEpollEvents, ids_source, why);
      if (!found || (*found)[0] < 0) {
        last_error = found ? "attach reactor tracepoints (syscalls): no syscalls/sys_enter_epoll_wait in tracefs "
                             "(a kernel without CONFIG_FTRACE_SYSCALLS)"
                           : "attach reactor tracepoints (syscalls): their ids from " + why;
        log::debug("reactor: {}", last_error);
        continue;
      }
      ids = std::move(*found);
    }
    std::unique_ptr<ReactorProbe> p(new ReactorProbe());
    p->skel_.reset(reactor_bpf__open());
    if (!p->skel_) {
      error = "open BPF object reactor: " + errno_text(errno);
      return nullptr;
    }
    auto* progs = &p->skel_->progs;
    struct Hook {
      bpf_program* prog;
      bool per_syscall;
      bool required;  // epoll_pwait2 (5.11) may be missing: the others still count every other epoll call
    };
    const Hook hooks[] = {
        {progs->rt_wait_enter, true, true}, {progs->rt_wait_exit, true, true},     {progs->rt_pwait_enter, true, true},
        {progs->rt_pwait_exit, true, true}, {progs->rt_pwait2_enter, true, false}, {progs->rt_pwait2_exit, true, false},
        {progs->rt_raw_enter, false, true}, {progs->rt_raw_exit, false, true},
    };
    for (const auto& h : hooks) bpf_program__set_autoload(h.prog, h.per_syscall == per_syscall);
    configure_pid_ns(p->skel_.get());
    p->skel_->rodata->nr_epoll_wait = kNrEpollWait;
    p->skel_->rodata->nr_epoll_pwait = SYS_epoll_pwait;
    p->skel_->rodata->nr_epoll_pwait2 = kNrEpollPwait2;
    if (int err = reactor_bpf__load(p->skel_.get())) {
      // A verifier rejection is a bug of ours, never a missing feature: no fallback hides it.
      error = fmt::format("load BPF object reactor ({}): {}", variant, errno_text(err));
      return nullptr;
    }
    bool attached = true;
    std::size_t next_id = 0;
    for (const auto& h : hooks) {
      if (h.per_syscall != per_syscall) continue;
      // Per-syscall programs by the ids read above (libbpf would look for a mounted tracefs itself), raw_syscalls
      // by name.
      const int id = per_syscall ? ids[next_id++] : 0;
      std::string why;
      Link link = !per_syscall ? Link(bpf_program__attach(h.prog))
                  : id >= 0    ? attach_tracepoint_id(h.prog, id, why)
                               : Link();
      if (link) {
        p->links_.push_back(std::move(link));
        continue;
      }
      if (why.empty()) why = id < 0 ? "no such event in tracefs" : errno_text(errno);
      if (!h.required) {
        log::debug("reactor: {} not attached ({}): epoll_pwait2 calls are not counted", bpf_program__name(h.prog),
                   why);
        continue;
      }
      last_error = fmt::format("attach reactor tracepoint program {} ({}): {}", bpf_program__name(h.prog), variant,
                               why);
      log::debug("{}", last_error);
      attached = false;
      break;
    }
    if (!attached) continue;  // the per-syscall tracepoints are not built into this kernel: try raw_syscalls
    if (per_syscall) log::debug("reactor: per-syscall tracepoints, their ids from {}", ids_source);
    p->method_ = variant;
    return p;
  }
  error = last_error;
  return nullptr;
}

bool ReactorProbe::add(int host_pid, std::string& error) {
  const __u32 key = static_cast<__u32>(host_pid);
  const reactor_proc zero{};
  if (bpf_map__update_elem(skel_->maps.reactor_procs, &key, sizeof key, &zero, sizeof zero, BPF_ANY)) {
    error = fmt::format("register process {} for reactor ticks: {}", host_pid, errno_text(errno));
    return false;
  }
  return true;
}

void ReactorProbe::remove(int host_pid) {
  const __u32 key = static_cast<__u32>(host_pid);
  bpf_map__delete_elem(skel_->maps.reactor_procs, &key, sizeof key, 0);
}

std::vector<std::pair<int, reactor_proc>> ReactorProbe::read() const {
  std::vector<std::pair<int, reactor_proc>> out;
  for (const auto& [key, value] : hash_entries<__u32, reactor_proc>(skel_->maps.reactor_procs)) {
    out.emplace_back(static_cast<int>(key), value);
  }
  return out;
}

std::uint64_t ReactorProbe::hook_misses() const { return recursion_misses(skel_->obj); }

}  // namespace sp::bpf
