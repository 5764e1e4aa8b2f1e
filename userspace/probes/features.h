// Feature probes: does this kernel, with this process's privileges, accept the exact hooks the probe families use?
// Each check loads one trivial program (bpf/feature_probe.bpf.c) on its exact hook, alone; the uprobe check also
// attaches it to a function of the agent itself and calls that function, so a "yes" means the trap really fires.
#pragma once

#include <string>
#include <vector>

namespace sp::bpf {

struct HookCheck {
  std::string hook;     // e.g. "tp_btf/block_rq_issue"
  bool ok = false;
  std::string detail;   // error text when !ok
};

HookCheck check_tp_btf_block();
HookCheck check_raw_tp_block();
HookCheck check_tp_btf_sched_exit();
HookCheck check_uprobe_attach();

// Empty when libbpf finds the running kernel's BTF (where CO-RE relocations come from: /sys/kernel/btf/vmlinux, or
// a vmlinux image in the places libbpf searches); otherwise what failed.
std::string kernel_btf_problem();

// Every check above, in a fixed order.
std::vector<HookCheck> check_all_hooks();

}  // namespace sp::bpf
