#include "probes/features.h"

#include <unistd.h>

#include <cerrno>

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "probes/handles.h"
#include "probes/map_util.h"
#include "core/util/log.h"
#include "feature_probe.skel.h"

// A function of our own to plant a uprobe on. extern "C" and noinline so that it has a plain symbol libbpf can find
// in /proc/self/exe, and is really called.
extern "C" __attribute__((noinline, used)) int sp_feature_probe_target(int x) {
  asm volatile("" ::: "memory");
  return x + 1;
}

namespace sp::bpf {
namespace {

using FeatureSkel = Skeleton<feature_probe_bpf>;

// Opens the skeleton with every program disabled except `keep`.
FeatureSkel open_only(bpf_program* (*pick)(feature_probe_bpf*), std::string& error) {
  FeatureSkel skel(feature_probe_bpf__open());
  if (!skel) {
    error = "open feature_probe object: " + errno_text(errno);
    return nullptr;
  }
  bpf_program* keep = pick(skel.get());
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) { bpf_program__set_autoload(prog, prog == keep); }
  return skel;
}

HookCheck load_one(const char* hook, bpf_program* (*pick)(feature_probe_bpf*)) {
  HookCheck check{hook, false, {}};
  FeatureSkel skel = open_only(pick, check.detail);
  if (!skel) return check;
  int err = feature_probe_bpf__load(skel.get());
  if (err) {
    check.detail = "load: " + errno_text(err);
    return check;
  }
  check.ok = true;
  return check;
}

}  // namespace

HookCheck check_tp_btf_block() {
  return load_one("tp_btf/block_rq_issue", [](feature_probe_bpf* s) { return s->progs.probe_tp_btf_block; });
}

HookCheck check_raw_tp_block() {
  return load_one("raw_tp/block_rq_issue", [](feature_probe_bpf* s) { return s->progs.probe_raw_tp_block; });
}

HookCheck check_tp_btf_sched_exit() {
  return load_one("tp_btf/sched_process_exit", [](feature_probe_bpf* s) { return s->progs.probe_tp_btf_exit; });
}

HookCheck check_uprobe_attach() {
  HookCheck check{"uprobe (attach + fire)", false, {}};
  FeatureSkel skel = open_only([](feature_probe_bpf* s) { return s->progs.probe_uprobe; }, check.detail);
  if (!skel) return check;
  if (int err = feature_probe_bpf__load(skel.get())) {
    check.detail = "load: " + errno_text(err);
    return check;
  }
  bpf_uprobe_opts opts{};
  opts.sz = sizeof opts;
  opts.func_name = "sp_feature_probe_target";
  Link link(bpf_program__attach_uprobe_opts(skel->progs.probe_uprobe, getpid(), "/proc/self/exe", 0, &opts));
  if (!link) {
    int err = errno;
    check.detail = "attach uprobe /proc/self/exe:sp_feature_probe_target: " + errno_text(err);
    if (err == EPERM || err == EACCES) check.detail += " (uprobes need CAP_SYS_ADMIN on this kernel)";
    return check;
  }
  volatile int sink = sp_feature_probe_target(1);
  (void)sink;
  if (skel->bss->hits == 0) {
    check.detail = "uprobe attached but did not fire";
    return check;
  }
  check.ok = true;
  return check;
}

std::vector<HookCheck> check_all_hooks() {
  return {check_tp_btf_block(), check_raw_tp_block(), check_tp_btf_sched_exit(), check_uprobe_attach()};
}

std::string kernel_btf_problem() {
  // libbpf's own warning would be a second line saying the same; the caller reports the problem once.
  const libbpf_print_fn_t previous = libbpf_set_print(nullptr);
  btf* vmlinux = btf__load_vmlinux_btf();
  const int err = errno;
  libbpf_set_print(previous);
  if (vmlinux) {
    btf__free(vmlinux);
    return {};
  }
  return "no kernel BTF (/sys/kernel/btf/vmlinux): " + errno_text(err);
}

}  // namespace sp::bpf
