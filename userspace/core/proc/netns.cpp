#include "core/proc/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "core/util/safe_file.h"

namespace sp {

std::uint64_t netns_inode(const std::string& netns_path) {
  struct stat st {};
  if (::stat(netns_path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

Fd socket_in_netns(const std::string& netns_path, std::uint64_t expect_inode, int domain, int type, int protocol,
                   std::string& error) {
  int open_error = 0;
  const Fd netns = open_file(netns_path, O_RDONLY, open_error);
  if (!netns.valid()) {
    error = fmt::format("open {}: {}", netns_path, errno_text(open_error));
    return Fd();
  }
  struct stat st {};
  if (expect_inode != 0 && (::fstat(netns.get(), &st) != 0 || st.st_ino != expect_inode)) {
    error = fmt::format("{} is no longer the namespace it was (the process exited?)", netns_path);
    return Fd();
  }
  Fd sock;
  std::string thread_error;
  try {
    std::thread worker([&] {
      if (::setns(netns.get(), CLONE_NEWNET) != 0) {
        thread_error = fmt::format("setns({}, CLONE_NEWNET): {}", netns_path, errno_text(errno));
        return;
      }
      sock.reset(::socket(domain, type | SOCK_CLOEXEC, protocol));
      if (!sock.valid()) thread_error = fmt::format("socket() in {}: {}", netns_path, errno_text(errno));
    });
    worker.join();
  } catch (const std::system_error& e) {  // no thread could be started
    error = fmt::format("start a thread to enter {}: {}", netns_path, e.what());
    return Fd();
  }
  if (!sock.valid()) error = thread_error;
  return sock;
}

}  // namespace sp
