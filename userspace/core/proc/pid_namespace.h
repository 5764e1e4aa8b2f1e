// Which PID namespace the agent's ids live in, for the BPF side. BPF's bpf_get_current_pid_tgid() returns the kernel's
// global (initial-namespace) ids; everything else in the agent (discovery under /proc, the backend map, the uprobe
// attach API, which resolves a PID in the caller's namespace) uses the ids of the agent's own PID namespace. In host
// mode (or a DaemonSet with hostPID) the two are the same; in a sidecar sharing the pod's PID namespace they are not,
// and the host's ids cannot be learnt from inside: /proc/PID/status's NSpid line lists only the levels from the
// reader's namespace inwards. So the BPF programs translate instead (bpf_get_ns_current_pid_tgid with the namespace's
// device and inode), and this module finds those two numbers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sp {

// The inode number the kernel gives the initial PID namespace (PROC_PID_INIT_INO, fixed in include/linux/proc_ns.h).
inline constexpr std::uint64_t kInitPidNsIno = 0xEFFFFFFCU;

// What the BPF programs are told (rodata sp_pidns_dev / sp_pidns_ino). ino == 0: the initial namespace, use the global
// ids as they are. dev is in the kernel's internal encoding (major << 20 | minor), which is what the helper compares.
struct PidNsFilter {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  bool initial() const { return ino == 0; }
  bool operator==(const PidNsFilter&) const = default;
};

// From stat() of a /proc/PID/ns/pid link target: st_dev (userspace encoding, as glibc's major()/minor() decode it)
// and st_ino. The initial namespace gives {0, 0}.
PidNsFilter pid_ns_filter(std::uint64_t st_dev, std::uint64_t st_ino);

// The filter for the calling process (stat of /proc/self/ns/pid, always the real /proc: the namespace is the caller's,
// whatever --proc-root says). nullopt with `error` set when it cannot be read.
std::optional<PidNsFilter> own_pid_ns_filter(std::string& error);

// Empty when the PIDs under `proc_root` are the caller's own (its `self` link names getpid()); otherwise a sentence
// saying they are not: a procfs mounted for another PID namespace (a sidecar that joined the pod's PID namespace but
// kept the host's /proc). A tree without a `self` link (a test fixture) is taken as it is.
std::string proc_root_pid_ns_mismatch(const std::string& proc_root);

}  // namespace sp
