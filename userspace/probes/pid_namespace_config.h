// Tells a BPF object, between open and load, which PID namespace the agent's ids belong to (see
// core/proc/pid_namespace.h and sp_current_pid_tgid in bpf/bpf_common.h).
#pragma once

#include "core/proc/pid_namespace.h"

namespace sp::bpf {

// The calling process's filter, read once; the initial namespace (with one warning) if it cannot be read.
const PidNsFilter& agent_pid_ns();

// For every skeleton whose object includes bpf_common.h and uses sp_current_pid_tgid().
template <typename Skel>
void configure_pid_ns(Skel* skel) {
  const PidNsFilter& ns = agent_pid_ns();
  skel->rodata->sp_pidns_dev = ns.dev;
  skel->rodata->sp_pidns_ino = ns.ino;
}

}  // namespace sp::bpf
