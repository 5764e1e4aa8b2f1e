// socket_in_netns: the socket is created in the named network namespace (checked with SIOCGSKNS, the socket's own
// namespace), the calling thread stays where it was, and a namespace that is not the expected one is refused.
#include <fcntl.h>
#include <linux/sockios.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "../../common/require.h"
#include "core/proc/netns.h"

namespace {

// The inode of the network namespace a socket belongs to, 0 if unknown.
std::uint64_t socket_netns(int sock) {
  const int ns = ::ioctl(sock, SIOCGSKNS);
  if (ns < 0) return 0;
  struct stat st {};
  const bool ok = ::fstat(ns, &st) == 0;
  ::close(ns);
  return ok ? st.st_ino : 0;
}

// A child process in a network namespace of its own, killed on destruction.
class NetnsChild {
 public:
  NetnsChild() {
    int ready[2];
    if (::pipe(ready) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      const char ok = ::unshare(CLONE_NEWNET) == 0 ? '1' : '0';
      (void)!::write(ready[1], &ok, 1);
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    char ok = '0';
    unshared_ = ::read(ready[0], &ok, 1) == 1 && ok == '1';
    ::close(ready[0]);
  }
  ~NetnsChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool unshared() const { return pid_ > 0 && unshared_; }
  std::string path() const { return "/proc/" + std::to_string(pid_) + "/ns/net"; }

 private:
  pid_t pid_ = -1;
  bool unshared_ = false;
};

TEST(NetnsTest, SocketIsCreatedInTheOtherNamespaceAndTheCallerStaysInItsOwn) {
  if (::geteuid() != 0) SP_SKIP_UNLESS_BPF_REQUIRED("entering a network namespace needs root (CAP_SYS_ADMIN)");
  NetnsChild child;
  ASSERT_TRUE(child.unshared()) << "unshare(CLONE_NEWNET) in a child failed";
  const std::uint64_t own = sp::netns_inode("/proc/thread-self/ns/net");
  const std::uint64_t other = sp::netns_inode(child.path());
  ASSERT_NE(own, 0u);
  ASSERT_NE(other, 0u);
  ASSERT_NE(own, other);

  std::string error;
  sp::Fd sock = sp::socket_in_netns(child.path(), other, AF_INET, SOCK_STREAM, 0, error);
  ASSERT_TRUE(sock.valid()) << error;
  EXPECT_EQ(socket_netns(sock.get()), other);
  EXPECT_EQ(::fcntl(sock.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_EQ(sp::netns_inode("/proc/thread-self/ns/net"), own) << "the calling thread changed namespace";
}

TEST(NetnsTest, ANamespaceOtherThanTheExpectedOneIsRefused) {
  const std::string own_path = "/proc/thread-self/ns/net";
  const std::uint64_t own = sp::netns_inode(own_path);
  ASSERT_NE(own, 0u);
  std::string error;
  sp::Fd sock = sp::socket_in_netns(own_path, own + 1, AF_INET, SOCK_STREAM, 0, error);
  EXPECT_FALSE(sock.valid());
  EXPECT_NE(error.find("no longer the namespace it was"), std::string::npos) << error;
}

TEST(NetnsTest, AMissingProcessGivesAOneLineError) {
  std::string error;
  sp::Fd sock = sp::socket_in_netns("/proc/999999999/ns/net", 0, AF_INET, SOCK_STREAM, 0, error);
  EXPECT_FALSE(sock.valid());
  EXPECT_NE(error.find("open /proc/999999999/ns/net"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
  EXPECT_EQ(sp::netns_inode("/proc/999999999/ns/net"), 0u);
}

}  // namespace
