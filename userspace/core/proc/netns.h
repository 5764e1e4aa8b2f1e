// Sockets opened inside another process's network namespace. In node-wide mode a pod's worker listens for metrics on
// the pod's own loopback, which the agent (in the host's or its own pod's namespace) cannot reach by address alone.
#pragma once

#include <cstdint>
#include <string>

#include "core/util/fd.h"

namespace sp {

// The inode of the network namespace `netns_path` names (e.g. /proc/PID/ns/net or /proc/thread-self/ns/net), 0 when
// it cannot be read (the process is gone, or no permission).
std::uint64_t netns_inode(const std::string& netns_path);

// socket(domain, type | SOCK_CLOEXEC, protocol) created inside the network namespace `netns_path` names. A socket
// belongs to the namespace of the thread that created it, for life, and namespaces are per thread: a short-lived
// thread setns()es there and creates it, so the calling thread never changes namespace. `expect_inode` (unless 0):
// fail when the namespace is another one (the process the path names exited and its PID was reused). Needs
// CAP_SYS_ADMIN over the target namespace (and CAP_SYS_PTRACE to open another user's /proc/PID/ns/net). An invalid Fd
// and a one-line `error` on failure.
Fd socket_in_netns(const std::string& netns_path, std::uint64_t expect_inode, int domain, int type, int protocol,
                   std::string& error);

}  // namespace sp
