#include "probes/reactor_probe.h"

#include <bpf/btf.h>
#include <fmt/core.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <string>

#include "core/util/log.h"
#include "probes/map_util.h"
#include "probes/pid_namespace_config.h"
#include "probes/tracepoint_ids.h"
#include "reactor.skel.h"

static_assert(sizeof(reactor_proc) == 8 * (SP_TICK_BUCKETS + 6));
static_assert(sizeof(reactor_thread) == 8 * (3 * SP_STATES + 4));

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
#ifdef SYS_futex_waitv
constexpr long kNrFutexWaitv = SYS_futex_waitv;
#else
constexpr long kNrFutexWaitv = -1;
#endif

// Whether the kernel's sched_switch tracepoint passes prev_state (5.18): its BTF typedef btf_trace_sched_switch is a
// pointer to a function of (void *, bool preempt, prev, next, unsigned int prev_state). Unknown: assume the current
// signature.
bool sched_switch_has_prev_state() {
  struct btf* btf = btf__load_vmlinux_btf();
  if (!btf) return true;
  bool has = true;
  const int id = btf__find_by_name_kind(btf, "btf_trace_sched_switch", BTF_KIND_TYPEDEF);
  if (id > 0) {
    const struct btf_type* t = btf__type_by_id(btf, btf__type_by_id(btf, id)->type);  // the pointer
    if (t && btf_is_ptr(t)) t = btf__type_by_id(btf, t->type);
    if (t && btf_is_func_proto(t)) has = btf_vlen(t) >= 5;
  }
  btf__free(btf);
  return has;
}

// The per-syscall tracepoints' events, in the order of the per-syscall programs in create()'s hook list.
const std::vector<std::string> kEpollEvents = {
    "syscalls/sys_enter_epoll_wait",   "syscalls/sys_exit_epoll_wait",   "syscalls/sys_enter_epoll_pwait",
    "syscalls/sys_exit_epoll_pwait",   "syscalls/sys_enter_epoll_pwait2", "syscalls/sys_exit_epoll_pwait2",
};

}  // namespace

// Members go in reverse order: links (detach), then the object.
ReactorProbe::~ReactorProbe() = default;

std::unique_ptr<ReactorProbe> ReactorProbe::create(std::string& error, const std::string& force,
                                                   const std::string& force_sched) {
  std::string last_error = "no hook variant selected";
  const bool has_prev_state = sched_switch_has_prev_state();
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
    for (const std::string sched : {"tp_btf", "raw_tp"}) {
      if (!force_sched.empty() && force_sched != sched) continue;
      const bool btf = sched == "tp_btf";
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
          {progs->rt_wait_enter, true, true},    {progs->rt_wait_exit, true, true},
          {progs->rt_pwait_enter, true, true},   {progs->rt_pwait_exit, true, true},
          {progs->rt_pwait2_enter, true, false}, {progs->rt_pwait2_exit, true, false},
          {progs->rt_raw_enter, false, true},    {progs->rt_raw_exit, false, true},
      };
      for (const auto& h : hooks) bpf_program__set_autoload(h.prog, h.per_syscall == per_syscall);
      bpf_program* const sched_progs[] = {progs->rt_switch_btf, progs->rt_wakeup_btf, progs->rt_wakeup_new_btf,
                                          progs->rt_switch_raw, progs->rt_wakeup_raw, progs->rt_wakeup_new_raw};
      for (std::size_t i = 0; i < 6; ++i) bpf_program__set_autoload(sched_progs[i], (i < 3) == btf);
      configure_pid_ns(p->skel_.get());
      p->host_ids_ = p->skel_->rodata->sp_pidns_ino == 0;
      p->skel_->rodata->nr_epoll_wait = kNrEpollWait;
      p->skel_->rodata->nr_epoll_pwait = SYS_epoll_pwait;
      p->skel_->rodata->nr_epoll_pwait2 = kNrEpollPwait2;
      p->skel_->rodata->nr_futex = SYS_futex;
      p->skel_->rodata->nr_futex_waitv = kNrFutexWaitv;
      p->skel_->rodata->switch_has_prev_state = has_prev_state;
      if (int err = reactor_bpf__load(p->skel_.get())) {
        if (btf) {
          // tp_btf needs BTF-typed tracing programs, which some kernels refuse: the raw_tp variant reads the same.
          last_error = fmt::format("load BPF object reactor ({}, {}): {}", variant, sched, errno_text(err));
          log::debug("reactor: {}", last_error);
          continue;
        }
        // A verifier rejection of the raw_tp variant is a bug of ours, never a missing feature: no fallback hides it.
        error = fmt::format("load BPF object reactor ({}, {}): {}", variant, sched, errno_text(err));
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
      if (!attached) break;  // the per-syscall tracepoints are not built into this kernel: try raw_syscalls
      bool sched_attached = true;
      for (std::size_t i = btf ? 0 : 3; i < (btf ? 3u : 6u); ++i) {
        Link link(bpf_program__attach(sched_progs[i]));
        if (link) {
          p->links_.push_back(std::move(link));
          continue;
        }
        last_error = fmt::format("attach reactor scheduler program {} ({}): {}", bpf_program__name(sched_progs[i]),
                                 sched, errno_text(errno));
        log::debug("{}", last_error);
        sched_attached = false;
        break;
      }
      if (!sched_attached) continue;  // tp_btf refused: raw_tp
      if (per_syscall) log::debug("reactor: per-syscall tracepoints, their ids from {}", ids_source);
      p->method_ = variant;
      p->sched_method_ = sched;
      return p;
    }
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
  // In the host's PID namespace the agent's ids are the host's: the scheduler hooks count the process from now.
  // Elsewhere the epoll hooks add it at its main thread's first epoll call (bpf/reactor.bpf.c learn_process).
  if (host_ids_) {
    if (bpf_map__update_elem(skel_->maps.sched_procs, &key, sizeof key, &key, sizeof key, BPF_ANY)) {
      error = fmt::format("register process {} for thread states: {}", host_pid, errno_text(errno));
      bpf_map__delete_elem(skel_->maps.reactor_procs, &key, sizeof key, 0);
      return false;
    }
    __atomic_fetch_or(&skel_->bss->tgid_bits[(key / 64) % SP_TGID_WORDS], 1ULL << (key % 64), __ATOMIC_RELAXED);
  }
  return true;
}

void ReactorProbe::remove(int host_pid) {
  const __u32 key = static_cast<__u32>(host_pid);
  bpf_map__delete_elem(skel_->maps.reactor_procs, &key, sizeof key, 0);
  // Its host TGID(s) out of sched_procs (by value: in another namespace only BPF knew the host id), then the bitmap
  // rebuilt from what is left, then its threads' entries.
  std::set<__u32> left;
  for (const auto& [host_tgid, agent_tgid] : hash_entries<__u32, __u32>(skel_->maps.sched_procs)) {
    if (agent_tgid == key) {
      bpf_map__delete_elem(skel_->maps.sched_procs, &host_tgid, sizeof host_tgid, 0);
    } else {
      left.insert(host_tgid);
    }
  }
  for (std::size_t w = 0; w < SP_TGID_WORDS; ++w) {
    __u64 bits = 0;
    for (__u32 t : left) {
      if ((t / 64) % SP_TGID_WORDS == w) bits |= 1ULL << (t % 64);
    }
    __atomic_store_n(&skel_->bss->tgid_bits[w], bits, __ATOMIC_RELAXED);
  }
  for (const auto& [tid, t] : hash_entries<__u32, reactor_thread>(skel_->maps.reactor_threads)) {
    if (t.tgid == key) bpf_map__delete_elem(skel_->maps.reactor_threads, &tid, sizeof tid, 0);
  }
}

std::vector<std::pair<std::uint32_t, reactor_thread>> ReactorProbe::read_threads() const {
  return hash_entries<__u32, reactor_thread>(skel_->maps.reactor_threads);
}

void ReactorProbe::drop_thread(std::uint32_t host_tid) {
  bpf_map__delete_elem(skel_->maps.reactor_threads, &host_tid, sizeof host_tid, 0);
}

std::uint64_t ReactorProbe::now_ns() const {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t ReactorProbe::threads_lost() const {
  return __atomic_load_n(&skel_->bss->threads_lost, __ATOMIC_RELAXED);
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

namespace sp::bpf {

std::vector<std::pair<std::string, int>> ReactorProbe::programs() const {
  std::vector<std::pair<std::string, int>> out;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (bpf_program__fd(prog) >= 0) out.emplace_back(bpf_program__name(prog), bpf_program__fd(prog));
  }
  return out;
}

}  // namespace sp::bpf
