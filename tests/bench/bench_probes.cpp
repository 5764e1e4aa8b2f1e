// Loader for the per-event cost benchmark (scripts/bench_probes.sh). Attaches ONE probe family to the benchmark's
// workload, in one of two modes, and holds it until SIGTERM/SIGINT:
//   ours   the family's real BPF object through the same classes and attach specs the agent uses (GcProbe with the
//          plan of core/gc_locator, LibpqProbe with the synchronous probes the agent uses for psycopg2, PgServerProbe
//          on the postgres binary for every process, BlockIoProbe system-wide, ReactorProbe in the hook variant
//          --hooks names with --pid registered as a profiled process), ring buffers drained every 250 ms like the
//          agent does;
//   floor  bpf/bench/probe_floor.bpf.c's empty programs on exactly the same hooks (same USDT notes, same uprobe and
//          uretprobe addresses, same PID filter, same tracepoints and attach type).
// It writes "attached" to --ready FILE once every hook is in place, and on exit prints what the family recorded
// (events drained, and for GC the pauses in its histogram) so the script can check that the hooks really fired.
//
//   sp_bench_probes attach FAMILY MODE [--pid PID] [--binary PATH] [--gc-method usdt|methoddef] [--ready FILE]
//                                      [--hooks syscalls|raw_syscalls]   (reactor)
//   sp_bench_probes gc-plan BINARY usdt|methoddef    prints the plan: method, link-time address, file offset
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/python/elf_file.h"
#include "core/python/gc_locator.h"
#include "core/util/ring_waker.h"
#include "probe_floor.skel.h"
#include "probes/blockio_probe.h"
#include "probes/gc_probe.h"
#include "probes/handles.h"
#include "probes/libbpf_setup.h"
#include "probes/libpq_probe.h"
#include "probes/pgserver_probe.h"
#include "probes/reactor_probe.h"

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

struct Args {
  std::string family, mode, binary, gc_method = "usdt", ready, hooks = "raw_syscalls";
  int pid = -1;
};

[[noreturn]] void die(const std::string& msg) {
  fmt::print(stderr, "sp_bench_probes: {}\n", msg);
  std::exit(1);
}

std::optional<sp::GcProbePlan> gc_plan(const std::string& path, const std::string& method_name) {
  auto method = sp::parse_gc_method(method_name);
  if (!method) die("unknown GC method " + method_name + " (usdt, symbol, methoddef)");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open " + path + ": " + std::strerror(errno));
  std::string error;
  auto elf = sp::ElfFile::from_fd(fd, error);
  close(fd);
  if (!elf) die("parse " + path + ": " + error);
  std::string name = path.substr(path.rfind('/') + 1);
  auto plan = sp::plan_gc_probe(*elf, name, error, method);
  if (!plan) die("no " + method_name + " GC plan for " + path + ": " + error);
  return plan;
}

using FloorSkel = sp::bpf::Skeleton<probe_floor_bpf>;

// Loads the floor object with only the programs `mode` needs: "uprobe" (usdt/uprobe/uretprobe), "tp_btf", "raw_tp"
// (the block family's), "syscalls" (the epoll tracepoints), "raw_syscalls" (sys_enter/sys_exit).
FloorSkel load_floor(const std::string& mode) {
  FloorSkel skel(probe_floor_bpf__open());
  if (!skel) die(std::string("open probe_floor: ") + std::strerror(errno));
  const bool io_start = sp::bpf::kernel_has_block_io_start();  // the block family attaches it only where it exists
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) {
    std::string sec = bpf_program__section_name(prog);
    const bool syscalls = sec.starts_with("tracepoint/syscalls/");
    const bool raw_syscalls = sec == "raw_tp/sys_enter" || sec == "raw_tp/sys_exit";
    bool want = mode == "uprobe"         ? sec.starts_with("usdt") || sec.starts_with("uprobe") || sec.starts_with("uretprobe")
                : mode == "syscalls"     ? syscalls
                : mode == "raw_syscalls" ? raw_syscalls
                                         : sec.starts_with(mode + "/") && !raw_syscalls;
    if (sec.ends_with("/block_io_start") && !io_start) want = false;
    if (sec.starts_with("tp_btf/sched_")) want = false;  // the "sched" family's floor, loaded on its own
    bpf_program__set_autoload(prog, want);
  }
  if (int err = probe_floor_bpf__load(skel.get())) die("load probe_floor (" + mode + "): " + std::strerror(-err));
  return skel;
}

sp::bpf::Link must(bpf_link* link, const std::string& what) {
  if (!link) die("attach " + what + ": " + std::strerror(errno));
  return sp::bpf::Link(link);
}

sp::bpf::Link floor_usdt(probe_floor_bpf* skel, int pid, const std::string& path, const char* provider,
                         const char* name) {
  return must(bpf_program__attach_usdt(skel->progs.floor_usdt, pid, path.c_str(), provider, name, nullptr),
              fmt::format("usdt {}:{}:{}", path, provider, name));
}

sp::bpf::Link floor_uprobe(probe_floor_bpf* skel, int pid, const std::string& path, bool ret, const char* func,
                           std::uint64_t offset) {
  bpf_uprobe_opts opts{};
  opts.sz = sizeof opts;
  opts.retprobe = ret;
  opts.func_name = func;
  return must(bpf_program__attach_uprobe_opts(ret ? skel->progs.floor_uretprobe : skel->progs.floor_uprobe, pid,
                                              path.c_str(), func ? 0 : offset, &opts),
              fmt::format("{} {}:{}", ret ? "uretprobe" : "uprobe", path, func ? func : fmt::format("{:#x}", offset)));
}

std::string target_path(const Args& a, const std::string& binary) {
  if (a.pid > 0) return fmt::format("/proc/{}/root{}", a.pid, binary);
  return binary;
}

void mark_ready(const Args& a) {
  if (a.ready.empty()) return;
  std::ofstream(a.ready) << "attached\n";
}

// Drains as the agent does: every 250 ms, and at once when a ring asks for it (a quarter full).
void hold(const std::function<void()>& drain, const std::vector<int>& rings) {
  sp::RingWaker waker;
  std::string error;
  for (int fd : rings) {
    if (!waker.watch(fd, error)) die(error);
  }
  while (!g_stop) {
    waker.wait(std::chrono::milliseconds(250));  // a signal (g_stop) ends it early too
    drain();
  }
  drain();
}

// Run-time statistics of programs (the kernel counts them while a BPF_ENABLE_STATS fd is open): runs and mean ns per
// run, measured inside the kernel, so that other load on the machine does not blur the figure.
void print_prog_stats(const char* who, const std::vector<std::pair<std::string, int>>& progs) {
  for (const auto& [name, fd] : progs) {
    bpf_prog_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len)) continue;
    fmt::print("{}: prog {} runs {} ns_per_run {:.1f}\n", who, name, info.run_cnt,
               info.run_cnt ? static_cast<double>(info.run_time_ns) / static_cast<double>(info.run_cnt) : 0.0);
  }
}

int run_floor(const Args& a) {
  std::vector<sp::bpf::Link> links;
  FloorSkel skel;
  if (a.family == "blockio") {
    for (const char* variant : {"tp_btf", "raw_tp"}) {
      skel = load_floor(variant);
      bpf_program* prog = nullptr;
      bool ok = true;
      bpf_object__for_each_program(prog, skel->obj) {
        if (!bpf_program__autoload(prog)) continue;
        bpf_link* l = bpf_program__attach(prog);
        if (!l) {
          ok = false;
          break;
        }
        links.emplace_back(l);
      }
      if (ok) {
        fmt::print("floor: {} block tracepoints ({} programs)\n", variant, links.size());
        break;
      }
      links.clear();
    }
    if (links.empty()) die("attach the block floor programs (tp_btf and raw_tp)");
  } else if (a.family == "reactor") {
    skel = load_floor(a.hooks);
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel->obj) {
      if (!bpf_program__autoload(prog)) continue;
      bpf_link* l = bpf_program__attach(prog);
      // epoll_pwait2 (5.11) may be missing, as the family allows.
      if (!l && std::string(bpf_program__name(prog)).find("pwait2") != std::string::npos) continue;
      links.push_back(must(l, bpf_program__section_name(prog)));
    }
    fmt::print("floor: reactor {} ({} programs)\n", a.hooks, links.size());
  } else if (a.family == "sched") {
    // Only the scheduler programs: the block ones would attach too under the "tp_btf/" prefix.
    skel = FloorSkel(probe_floor_bpf__open());
    if (!skel) die(std::string("open probe_floor: ") + std::strerror(errno));
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel->obj) {
      bpf_program__set_autoload(prog, std::string(bpf_program__section_name(prog)).starts_with("tp_btf/sched_"));
    }
    if (int err = probe_floor_bpf__load(skel.get()))
      die(std::string("load probe_floor (sched): ") + std::strerror(-err));
    bpf_object__for_each_program(prog, skel->obj) {
      if (bpf_program__autoload(prog)) links.push_back(must(bpf_program__attach(prog), bpf_program__name(prog)));
    }
    fmt::print("floor: sched tp_btf ({} programs)\n", links.size());
    const int stats = bpf_enable_stats(BPF_STATS_RUN_TIME);
    mark_ready(a);
    hold([] {}, {});
    std::vector<std::pair<std::string, int>> progs;
    bpf_object__for_each_program(prog, skel->obj) {
      if (bpf_program__autoload(prog)) progs.emplace_back(bpf_program__name(prog), bpf_program__fd(prog));
    }
    print_prog_stats("floor", progs);
    if (stats >= 0) close(stats);
    return 0;
  } else {
    skel = load_floor("uprobe");
    if (a.family == "gc") {
      std::string path = target_path(a, a.binary);
      auto plan = gc_plan(path, a.gc_method);
      if (plan->method == sp::GcMethod::Usdt) {
        links.push_back(floor_usdt(skel.get(), a.pid, path, "python", "gc__start"));
        links.push_back(floor_usdt(skel.get(), a.pid, path, "python", "gc__done"));
      } else {
        links.push_back(floor_uprobe(skel.get(), a.pid, path, false, nullptr, plan->func_offset));
        links.push_back(floor_uprobe(skel.get(), a.pid, path, true, nullptr, plan->func_offset));
      }
    } else if (a.family == "libpq") {
      std::string path = target_path(a, a.binary);
      for (const char* f : {"PQexec", "PQexecParams", "PQexecPrepared", "PQprepare"}) {
        links.push_back(floor_uprobe(skel.get(), a.pid, path, false, f, 0));
        links.push_back(floor_uprobe(skel.get(), a.pid, path, true, f, 0));
      }
    } else if (a.family == "pgserver") {
      for (const char* n : {"query__start", "query__done", "lock__wait__start", "lock__wait__done",
                            "transaction__commit", "transaction__abort"})
        links.push_back(floor_usdt(skel.get(), -1, a.binary, "postgresql", n));
    } else {
      die("unknown family " + a.family);
    }
  }
  mark_ready(a);
  hold([] {}, {});
  fmt::print("floor: {} links released\n", links.size());
  return 0;
}

int run_ours(const Args& a) {
  std::string error;
  std::uint64_t events = 0;
  if (a.family == "gc") {
    auto probe = sp::bpf::GcProbe::create(error);
    if (!probe) die(error);
    std::string path = target_path(a, a.binary);
    auto plan = gc_plan(path, a.gc_method);
    sp::bpf::GcAttachSpec spec;
    spec.host_pid = a.pid;
    spec.binary_path = path;
    spec.method = plan->method == sp::GcMethod::Usdt ? sp::bpf::GcAttachMethod::Usdt : sp::bpf::GcAttachMethod::Uprobe;
    spec.func_offset = plan->func_offset;
    spec.target.gen_source = static_cast<__u32>(plan->generation);
    spec.target.ret_source = static_cast<__u32>(plan->collected);
    spec.target.long_layout =
        static_cast<__u32>(plan->long_layout ? plan->long_layout->kind : sp::PyLongLayoutKind::SizeSigned);
    spec.description = fmt::format("benchmark workload (pid {})", a.pid);
    if (!probe->attach(spec, error)) die(error);
    fmt::print("ours: gc by {} ({})\n", sp::gc_method_name(plan->method), plan->detail);
    mark_ready(a);
    hold([&] { events += probe->drain([](const gc_event&) {}); }, {probe->ring_fd()});
    std::uint64_t pauses = 0;
    for (const auto& h : probe->read_hist())
      if (static_cast<int>(h.key.tgid) == a.pid) pauses += h.value.count;
    fmt::print("ours: events {} pauses {} lost {}\n", events, pauses, probe->events_lost());
  } else if (a.family == "libpq") {
    auto probe = sp::bpf::LibpqProbe::create(error);
    if (!probe) die(error);
    sp::bpf::LibpqAttachSpec spec;
    spec.host_pid = a.pid;
    spec.libpq_path = target_path(a, a.binary);
    spec.async = false;  // what the agent's --libpq-async auto picks for psycopg2
    spec.description = fmt::format("benchmark workload (pid {})", a.pid);
    if (!probe->attach(spec, error)) die(error);
    mark_ready(a);
    hold([&] { events += probe->drain([](const pq_event&) {}); }, {probe->ring_fd()});
    fmt::print("ours: events {} lost {}\n", events, probe->events_lost());
  } else if (a.family == "pgserver") {
    auto probe = sp::bpf::PgServerProbe::create(error);
    if (!probe) die(error);
    if (!probe->attach(-1, a.binary, error)) die(error);
    mark_ready(a);
    hold(
        [&] {
          events += probe->drain([](const pgs_query_event&) {});
          events += probe->drain_locks([](const pgs_lock_event&) {});
        },
        {probe->ring_fd(), probe->lock_ring_fd()});
    std::uint64_t commits = 0;
    for (const auto& [tgid, s] : probe->read_backends()) commits += s.commits;
    fmt::print("ours: events {} commits {} lost {}\n", events, commits, probe->events_lost());
  } else if (a.family == "blockio") {
    auto probe = sp::bpf::BlockIoProbe::create(error);
    if (!probe) die(error);
    fmt::print("ours: {}\n", probe->hooks());
    mark_ready(a);
    std::map<std::uint32_t, std::uint64_t> per_process;  // the workload starts after the attach: no PID filter
    hold([&] { events += probe->drain([&](const sp_io_event& e) { ++per_process[e.tgid]; }); }, {probe->ring_fd()});
    fmt::print("ours: events {} lost {}\n", events, probe->events_lost());
    fmt::print(
        "ours: first seen at insert {} at issue {}; not tracked {}; completed unissued {}; untracked {}; "
        "flush machinery {}; issued again {}\n",
        probe->stat(SP_IO_STAT_FIRST_AT_INSERT), probe->stat(SP_IO_STAT_FIRST_AT_ISSUE),
        probe->stat(SP_IO_STAT_TRACK_FAILED), probe->stat(SP_IO_STAT_NEVER_ISSUED), probe->stat(SP_IO_STAT_UNTRACKED),
        probe->stat(SP_IO_STAT_FLUSH_MACHINERY), probe->stat(SP_IO_STAT_REISSUED));
    for (const auto& [tgid, n] : per_process) fmt::print("ours: process {} requests {}\n", tgid, n);
  } else if (a.family == "reactor") {
    auto probe = sp::bpf::ReactorProbe::create(error, a.hooks);
    if (!probe) die(error);
    if (!probe->add(a.pid, error)) die(error);
    fmt::print("ours: reactor by {}\n", probe->method());
    mark_ready(a);
    hold([] {}, {});
    for (const auto& [pid, p] : probe->read()) {
      if (pid == a.pid) fmt::print("ours: events {} waits {} lost 0\n", p.ticks, p.waits);
    }
  } else if (a.family == "sched") {
    auto probe = sp::bpf::ReactorProbe::create(error);
    if (!probe) die(error);
    if (a.pid > 0 && !probe->add(a.pid, error)) die(error);
    fmt::print("ours: reactor family, epoll by {}, scheduler by {}, {}\n", probe->method(), probe->sched_method(),
               a.pid > 0 ? fmt::format("profiling pid {}", a.pid) : std::string("profiling nothing"));
    const int stats = bpf_enable_stats(BPF_STATS_RUN_TIME);
    mark_ready(a);
    hold([] {}, {});
    print_prog_stats("ours", probe->programs());
    if (stats >= 0) close(stats);
    std::uint64_t threads = 0;
    for (const auto& [tid, t] : probe->read_threads()) threads += t.tgid == static_cast<__u32>(a.pid);
    fmt::print("ours: thread entries {} lost {} hook misses {}\n", threads, probe->threads_lost(),
               probe->hook_misses());
  } else {
    die("unknown family " + a.family);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "gc-plan") {
    auto plan = gc_plan(args[1], args[2]);
    fmt::print("method {} vaddr {:#x} offset {:#x}\n", sp::gc_method_name(plan->method), plan->func_vaddr,
               plan->func_offset);
    return 0;
  }
  if (args.size() < 3 || args[0] != "attach") {
    fmt::print(stderr,
               "usage: sp_bench_probes attach gc|libpq|pgserver|blockio|reactor|sched ours|floor [--pid PID]\n"
               "                       [--binary PATH] [--gc-method usdt|methoddef] [--ready FILE]\n"
               "                       [--hooks syscalls|raw_syscalls]\n"
               "       sp_bench_probes gc-plan BINARY usdt|methoddef\n");
    return 2;
  }
  Args a;
  a.family = args[1];
  a.mode = args[2];
  for (std::size_t i = 3; i + 1 < args.size(); i += 2) {
    if (args[i] == "--pid") {
      a.pid = std::atoi(args[i + 1].c_str());
    } else if (args[i] == "--binary") {
      a.binary = args[i + 1];
    } else if (args[i] == "--gc-method") {
      a.gc_method = args[i + 1];
    } else if (args[i] == "--ready") {
      a.ready = args[i + 1];
    } else if (args[i] == "--hooks") {
      a.hooks = args[i + 1];
      if (a.hooks != "syscalls" && a.hooks != "raw_syscalls") die("--hooks: expected syscalls or raw_syscalls");
    } else {
      die("unknown option " + args[i]);
    }
  }
  if (a.family == "reactor" && a.pid <= 0) die("reactor needs --pid (the process whose main thread is profiled)");
  if ((a.family == "gc" || a.family == "libpq") && (a.pid <= 0 || a.binary.empty()))
    die(a.family + " needs --pid and --binary (the path inside the process's root)");
  if (a.family == "pgserver" && a.binary.empty()) die("pgserver needs --binary (the postgres executable)");
  sp::bpf::init_libbpf(false);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  if (a.mode == "ours") return run_ours(a);
  if (a.mode == "floor") return run_floor(a);
  die("unknown mode " + a.mode + " (ours, floor)");
}
