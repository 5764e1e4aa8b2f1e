#include "core/proc/socket_inventory.h"

#include "core/util/fd.h"
#include "core/proc/netns.h"
#include "core/proc/proc_parse.h"
#include "core/util/safe_file.h"

#include <fcntl.h>

#include <cerrno>
#include <map>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

namespace sp {
namespace {

bool process_gone(int error) { return error == ENOENT || error == ESRCH; }

std::string pid_path(const std::string& proc_root, int pid, const char* name) {
  return fmt::format("{}/{}/{}", proc_root, pid, name);
}

bool default_unix_peers(const std::string& proc_root, int pid, std::uint64_t netns, UnixPeerTable& peers,
                        std::string& error) {
  const std::uint64_t own = netns_inode("/proc/thread-self/ns/net");  // the calling thread's
  if (netns == 0 || netns == own) return dump_unix_peers(peers, error);
  return dump_unix_peers_in(pid_path(proc_root, pid, "ns/net"), peers, error);
}

// Collects problems; the message stays short when a whole host of processes fails the same way.
class Problems {
 public:
  void add(std::string problem) { problems_.push_back(std::move(problem)); }
  std::string text() const {
    constexpr std::size_t kShown = 5;
    std::string out;
    for (std::size_t i = 0; i < problems_.size() && i < kShown; ++i) {
      if (!out.empty()) out += "; ";
      out += problems_[i];
    }
    if (problems_.size() > kShown) out += fmt::format("; and {} more", problems_.size() - kShown);
    return out;
  }

 private:
  std::vector<std::string> problems_;
};

}  // namespace

std::optional<ProcessSockets> read_process_sockets(const std::string& proc_root, int pid, int& error) {
  ProcessSockets process;
  process.pid = pid;
  std::string link;
  error = read_link(pid_path(proc_root, pid, "ns/net"), link);
  if (error != 0) return std::nullopt;
  const auto netns = proc::namespace_inode(link, "net");
  if (!netns) {
    error = EINVAL;
    return std::nullopt;
  }
  process.netns = *netns;

  const std::string fd_dir = pid_path(proc_root, pid, "fd");
  const Fd dir = open_file(fd_dir, O_RDONLY | O_DIRECTORY, error);
  if (!dir.valid()) return std::nullopt;
  const auto names = list_dir(dir.get(), error);
  if (error != 0) return std::nullopt;
  for (const auto& name : names) {
    // A descriptor closed since the listing is simply not one the process holds any more.
    if (read_link(fd_dir + "/" + name, link) != 0) continue;
    if (const auto inode = proc::socket_inode(link)) process.inodes.push_back(*inode);
  }
  return process;
}

bool read_tcp_table(const std::string& proc_root, int pid, NetnsTcpTable& table, std::string& error,
                    std::size_t max_bytes) {
  table.sockets.clear();
  bool any = false;
  int first_error = 0;
  for (const char* name : {"net/tcp", "net/tcp6"}) {
    const std::string path = pid_path(proc_root, pid, name);
    const auto result = read_file(path, max_bytes);
    if (result.error != 0) {
      if (first_error == 0) first_error = result.error;
      continue;
    }
    any = true;
    auto sockets = proc::parse_net_tcp(result.data);
    table.sockets.insert(table.sockets.end(), sockets.begin(), sockets.end());
    if (result.too_big) error = fmt::format("{}: larger than {} bytes, the rest ignored", path, max_bytes);
  }
  if (!any) error = fmt::format("{}: {}", pid_path(proc_root, pid, "net/tcp"), errno_text(first_error));
  return any;
}

BackendMapper::BackendMapper(std::string proc_root)
    : proc_root_(std::move(proc_root)),
      unix_peers_([root = proc_root_](int pid, std::uint64_t netns, UnixPeerTable& peers, std::string& error) {
        return default_unix_peers(root, pid, netns, peers, error);
      }) {}

BackendMapper::BackendMapper(std::string proc_root, UnixPeerSource unix_peers)
    : proc_root_(std::move(proc_root)), unix_peers_(std::move(unix_peers)) {}

std::vector<BackendLink> BackendMapper::map(const std::vector<int>& worker_pids, const std::vector<int>& backend_pids,
                                            std::string& error) {
  error.clear();
  Problems problems;
  SocketSnapshot snapshot;
  // Namespace -> the PIDs living in it, workers first (the Unix dump goes through a worker).
  std::map<std::uint64_t, std::vector<int>> namespaces;
  std::map<std::uint64_t, int> worker_namespaces;  // namespace -> one worker in it

  auto read_all = [&](const std::vector<int>& pids, std::vector<ProcessSockets>& out, bool workers) {
    for (const int pid : pids) {
      int read_error = 0;
      auto process = read_process_sockets(proc_root_, pid, read_error);
      if (!process) {
        if (!process_gone(read_error)) problems.add(fmt::format("pid {}: sockets: {}", pid, errno_text(read_error)));
        continue;
      }
      namespaces[process->netns].push_back(pid);
      if (workers) worker_namespaces.emplace(process->netns, pid);
      out.push_back(std::move(*process));
    }
  };
  read_all(worker_pids, snapshot.workers, true);
  read_all(backend_pids, snapshot.backends, false);

  for (const auto& [netns, pids] : namespaces) {
    NetnsTcpTable table;
    table.netns = netns;
    std::string table_error;
    bool read = false;
    // Any PID of the namespace shows the same table; the next one serves when the first has just exited.
    for (const int pid : pids) {
      table_error.clear();
      if (read_tcp_table(proc_root_, pid, table, table_error)) {
        read = true;
        break;
      }
    }
    if (!table_error.empty()) problems.add(fmt::format("network namespace {}: {}", netns, table_error));
    if (read) snapshot.tcp.push_back(std::move(table));
  }

  // Unix peers are only needed for backend sockets that are not TCP ones.
  std::unordered_set<std::uint64_t> tcp_inodes;
  for (const auto& table : snapshot.tcp) {
    for (const auto& socket : table.sockets) tcp_inodes.insert(socket.inode);
  }
  bool need_unix = false;
  for (const auto& backend : snapshot.backends) {
    for (const auto inode : backend.inodes) need_unix = need_unix || !tcp_inodes.contains(inode);
  }
  if (need_unix) {
    for (const auto& [netns, pid] : worker_namespaces) {
      std::string dump_error;
      if (!unix_peers_(pid, netns, snapshot.unix_peers, dump_error)) {
        problems.add(fmt::format("network namespace {}: Unix socket peers: {}", netns, dump_error));
      }
    }
  }

  error = problems.text();
  return match_backends(snapshot);
}

}  // namespace sp
