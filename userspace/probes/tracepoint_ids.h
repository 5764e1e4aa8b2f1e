// Perf-event tracepoints (SEC("tracepoint/CATEGORY/NAME")) are attached by the event's id, which the kernel shows
// only in tracefs (events/CATEGORY/NAME/id). libbpf reads it from /sys/kernel/tracing or /sys/kernel/debug/tracing,
// and many hosts and most containers mount neither. Rather than fall back to hooks that run on every syscall of every
// task (raw_syscalls), the reactor family reads the ids from a tracefs of its own: a child process moves to a private
// mount namespace, mounts tracefs there, reads the ids and exits. Nothing changes on the host, and the mount goes
// with the child. It needs CAP_SYS_ADMIN (mount); where a container runtime forbids mount (AppArmor's default
// profile, seccomp), it fails with the reason and the caller falls back.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "probes/handles.h"

struct bpf_program;

namespace sp::bpf {

// The ids of `events` ("syscalls/sys_enter_epoll_wait", ...), in the same order; -1 for an event this kernel does not
// have. From the host's tracefs where it is mounted, else from a private mount. nullopt with `error` when neither
// could be read. `source` says which ("/sys/kernel/tracing", "a private tracefs mount").
std::optional<std::vector<int>> tracepoint_ids(const std::vector<std::string>& events, std::string& source,
                                               std::string& error);

// The same, always through a private tracefs mount (what tracepoint_ids() does when the host has none). Exposed for
// tests.
std::optional<std::vector<int>> tracepoint_ids_from_private_mount(const std::vector<std::string>& events,
                                                                  std::string& error);

// Attaches a tracepoint program to the event `id` (a perf event on CPU 0: a BPF program on a tracepoint runs on every
// CPU). An empty link with `error` on failure.
Link attach_tracepoint_id(bpf_program* prog, int id, std::string& error);

}  // namespace sp::bpf
