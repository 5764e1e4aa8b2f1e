// Which Synapse worker each PostgreSQL backend serves.
//
// A backend owns the server end of its client's connection; the client end is owned by the worker. For TCP the two
// ends are rows of net/tcp(6) with mirrored 4-tuples; for Unix sockets the kernel's sock_diag reports each socket's
// peer inode. This module is the pure half: it takes what the collector (socket_inventory.h) read from /proc and
// netlink and joins it, with no system calls, so every case can be tested with synthetic tables.
#pragma once

#include "core/proc/proc_parse.h"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace sp {

struct BackendLink {
  int backend_pid = 0;
  int worker_pid = 0;
  std::string transport;  // "tcp" or "unix"
  auto operator<=>(const BackendLink&) const = default;
};

// The sockets one process holds open (inodes from its /proc/PID/fd links) and the network namespace it lives in.
struct ProcessSockets {
  int pid = 0;
  std::uint64_t netns = 0;  // inode of /proc/PID/ns/net; 0 when unknown
  std::vector<std::uint64_t> inodes;
};

// net/tcp and net/tcp6 of one network namespace, concatenated.
struct NetnsTcpTable {
  std::uint64_t netns = 0;
  std::vector<proc::TcpSocket> sockets;
};

struct SocketSnapshot {
  std::vector<ProcessSockets> workers;
  std::vector<ProcessSockets> backends;
  std::vector<NetnsTcpTable> tcp;  // one per network namespace that a worker or backend lives in
  // Unix socket inode -> its peer's inode, from every namespace dumped. Socket inodes are unique system-wide (one
  // sockfs), so the namespaces' tables merge without clashes.
  std::unordered_map<std::uint64_t, std::uint64_t> unix_peers;
};

// Joins the snapshot: for each backend, the worker owning the peer of one of its sockets. At most one link per
// backend (PostgreSQL serves one client connection per backend); a backend whose sockets lead to two different
// workers, or to a socket two workers share, is left out rather than guessed. Backends whose peer belongs to no
// worker (psql, a worker that exited, a non-Synapse client) are not in the result. Sorted by backend PID.
//
// TCP: a backend socket (local L, remote R) matches a socket (local R, remote L). Both ends are looked up in the
// backend's own namespace first; across namespaces only when neither address is loopback (127.0.0.1 in two pods is
// two different hosts) and the 4-tuple is unique among the other namespaces. Only sockets that still have an inode
// count, so a TIME_WAIT or orphaned end never matches. NAT between worker and backend (a Kubernetes Service's
// ClusterIP) changes the tuple and is not matched.
std::vector<BackendLink> match_backends(const SocketSnapshot& snapshot);

}  // namespace sp
