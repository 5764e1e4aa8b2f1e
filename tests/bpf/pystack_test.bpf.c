// Test-only: captures the Python stack of the calling thread with bpf/pystack.h when the target process enters the
// function this uprobe is attached to (tests/integration/pystack_it_test.cpp attaches it to libc's getppid, which
// the workload calls from known Python functions). Each capture goes into the next slot of ps_stacks.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "pystack.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PS_SLOTS 4

const volatile __u32 target_tgid = 0;

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sp_py_stack_proc);
} ps_proc SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, PS_SLOTS);
  __type(key, __u32);
  __type(value, struct sp_py_stack);
} ps_stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} ps_hits SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(pystack_capture) {
  if ((bpf_get_current_pid_tgid() >> 32) != target_tgid) return 0;
  __u32 zero = 0;
  struct sp_py_stack_proc *p = bpf_map_lookup_elem(&ps_proc, &zero);
  __u64 *hits = bpf_map_lookup_elem(&ps_hits, &zero);
  if (!p || !hits) return 0;
  __u32 slot = (__u32)__sync_fetch_and_add(hits, 1);
  if (slot >= PS_SLOTS) return 0;
  struct sp_py_stack *s = bpf_map_lookup_elem(&ps_stacks, &slot);
  if (!s) return 0;
  sp_py_current_stack(p, s);
  return 0;
}
