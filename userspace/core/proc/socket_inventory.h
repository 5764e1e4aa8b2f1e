// The live half of backend mapping (see backend_map.h for the pure join): reads which sockets each process holds
// from a /proc tree, the TCP tables of each network namespace involved, and (through unix_diag.h) the Unix socket
// peers, then asks match_backends() which worker each PostgreSQL backend serves.
//
// Network namespaces: /proc/PID/net/tcp shows PID's namespace, which need not be the agent's (a sidecar, a
// DaemonSet with hostPID), so every table is read through a PID that lives in it, once per namespace and call.
// Unix peers are dumped once per namespace a worker lives in: directly when it is the agent's own, otherwise by
// entering it (CAP_SYS_ADMIN). Cost per call: one readlink per descriptor of every process given, one read of
// net/tcp + net/tcp6 per namespace, one sock_diag dump per worker namespace (skipped when every backend is on TCP).
#pragma once

#include "core/postgres/backend_map.h"
#include "core/proc/unix_diag.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sp {

// Socket inodes from /proc_root/PID/fd and the namespace from /proc_root/PID/ns/net. nullopt with `error` = the
// errno of the failure (ENOENT/ESRCH: the process is gone).
std::optional<ProcessSockets> read_process_sockets(const std::string& proc_root, int pid, int& error);

// /proc_root/PID/net/tcp and tcp6 (tcp6 may be missing: no IPv6). False with `error` when neither could be read.
// Tables above `max_bytes` are cut there (the rows read are kept) and reported in `error` while returning true.
bool read_tcp_table(const std::string& proc_root, int pid, NetnsTcpTable& table, std::string& error,
                    std::size_t max_bytes = 64u << 20);

class BackendMapper {
 public:
  // Fills `peers` with the Unix socket peers of network namespace `netns`, which `pid` (a PID under proc_root) lives
  // in. Replaceable so that tests with a fake /proc tree need no netlink.
  using UnixPeerSource =
      std::function<bool(int pid, std::uint64_t netns, UnixPeerTable& peers, std::string& error)>;

  // The default source: sock_diag in the agent's own namespace, or after entering /proc_root/PID/ns/net.
  explicit BackendMapper(std::string proc_root);
  BackendMapper(std::string proc_root, UnixPeerSource unix_peers);

  // Which worker each backend serves, sorted by backend PID; backends with no Synapse peer are absent. PIDs are as
  // seen in proc_root. Never throws. `error` is empty when everything could be read; otherwise it lists what could
  // not (a namespace's tables, a process's descriptors other than "it exited"), and the links that could still be
  // established are returned.
  std::vector<BackendLink> map(const std::vector<int>& worker_pids, const std::vector<int>& backend_pids,
                               std::string& error);

 private:
  std::string proc_root_;
  UnixPeerSource unix_peers_;
};

}  // namespace sp
