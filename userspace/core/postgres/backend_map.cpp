#include "core/postgres/backend_map.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

namespace sp {
namespace {

constexpr int kAmbiguous = -1;

struct Tuple {
  proc::IpAddress local_addr{};
  int local_port = 0;
  proc::IpAddress remote_addr{};
  int remote_port = 0;
  auto operator<=>(const Tuple&) const = default;
};

Tuple tuple_of(const proc::TcpSocket& socket) {
  return Tuple{socket.local_addr, socket.local_port, socket.remote_addr, socket.remote_port};
}

Tuple mirrored(const Tuple& t) { return Tuple{t.remote_addr, t.remote_port, t.local_addr, t.local_port}; }

// A socket end found in the tables: its inode and the namespace whose table holds it.
struct End {
  std::uint64_t netns = 0;
  std::uint64_t inode = 0;
};

// inode -> worker PID, or kAmbiguous when two workers hold the same socket (inherited across fork).
std::unordered_map<std::uint64_t, int> worker_owners(const std::vector<ProcessSockets>& workers) {
  std::unordered_map<std::uint64_t, int> owners;
  for (const auto& worker : workers) {
    for (const auto inode : worker.inodes) {
      const auto [it, inserted] = owners.emplace(inode, worker.pid);
      if (!inserted && it->second != worker.pid) it->second = kAmbiguous;
    }
  }
  return owners;
}

// The worker at the far end of a backend's TCP socket `own` (found in namespace `netns`), or 0.
int tcp_peer_worker(const End& own, const Tuple& peer_tuple, const std::map<Tuple, std::vector<End>>& candidates,
                    const std::unordered_map<std::uint64_t, int>& owners) {
  const auto it = candidates.find(peer_tuple);
  if (it == candidates.end()) return 0;
  const End* same_netns = nullptr;
  const End* other_netns = nullptr;
  int others = 0;
  for (const auto& end : it->second) {
    if (end.inode == own.inode) continue;
    if (end.netns == own.netns) {
      same_netns = &end;
    } else {
      other_netns = &end;
      ++others;
    }
  }
  const End* peer = same_netns;
  if (peer == nullptr) {
    // Another namespace's socket with the mirrored tuple is the same connection only if the addresses are real
    // (not loopback) and nothing else claims the tuple.
    const bool loopback = proc::is_loopback(peer_tuple.local_addr) || proc::is_loopback(peer_tuple.remote_addr);
    if (loopback || others != 1) return 0;
    peer = other_netns;
  }
  const auto owner = owners.find(peer->inode);
  return owner == owners.end() ? 0 : owner->second;
}

}  // namespace

std::vector<BackendLink> match_backends(const SocketSnapshot& snapshot) {
  const auto owners = worker_owners(snapshot.workers);

  // Every socket inode a backend holds, to pick its rows out of the tables in one pass.
  std::unordered_set<std::uint64_t> backend_inodes;
  for (const auto& backend : snapshot.backends) backend_inodes.insert(backend.inodes.begin(), backend.inodes.end());

  // Pass 1: the backends' own connected TCP sockets.
  struct BackendEnd {
    End end;
    Tuple tuple;
  };
  std::unordered_map<std::uint64_t, BackendEnd> backend_ends;  // inode -> row
  std::map<Tuple, std::vector<End>> candidates;                // mirrored tuple -> matching rows (filled in pass 2)
  for (const auto& table : snapshot.tcp) {
    for (const auto& socket : table.sockets) {
      if (socket.inode == 0 || socket.state == proc::kTcpListen || socket.remote_port == 0) continue;
      if (!backend_inodes.contains(socket.inode)) continue;
      const Tuple tuple = tuple_of(socket);
      backend_ends.emplace(socket.inode, BackendEnd{End{table.netns, socket.inode}, tuple});
      candidates.emplace(mirrored(tuple), std::vector<End>{});
    }
  }
  // Pass 2: every row whose tuple mirrors a backend's; these are the client ends.
  if (!candidates.empty()) {
    for (const auto& table : snapshot.tcp) {
      for (const auto& socket : table.sockets) {
        if (socket.inode == 0 || socket.state == proc::kTcpListen) continue;
        const auto it = candidates.find(tuple_of(socket));
        if (it != candidates.end()) it->second.push_back(End{table.netns, socket.inode});
      }
    }
  }

  std::vector<BackendLink> links;
  for (const auto& backend : snapshot.backends) {
    std::map<int, std::string> workers;  // worker PID -> transport
    bool ambiguous = false;
    for (const auto inode : backend.inodes) {
      int worker = 0;
      std::string transport;
      if (const auto tcp = backend_ends.find(inode); tcp != backend_ends.end()) {
        worker = tcp_peer_worker(tcp->second.end, mirrored(tcp->second.tuple), candidates, owners);
        transport = "tcp";
      } else if (const auto unix_peer = snapshot.unix_peers.find(inode);
                 unix_peer != snapshot.unix_peers.end() && unix_peer->second != 0) {
        if (const auto owner = owners.find(unix_peer->second); owner != owners.end()) worker = owner->second;
        transport = "unix";
      }
      if (worker == kAmbiguous) ambiguous = true;
      if (worker > 0) workers.emplace(worker, transport);
    }
    if (ambiguous || workers.size() != 1) continue;
    links.push_back(BackendLink{backend.pid, workers.begin()->first, workers.begin()->second});
  }
  std::sort(links.begin(), links.end());
  return links;
}

}  // namespace sp
