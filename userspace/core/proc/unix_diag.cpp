#include "core/proc/unix_diag.h"

#include "core/util/fd.h"
#include "core/proc/netns.h"
#include "core/util/safe_file.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace sp {
namespace {

// TCP_ESTABLISHED in the kernel's state numbering, which Unix sockets reuse for "connected".
constexpr std::uint32_t kStateEstablished = 1;
// A datagram larger than this is reported as truncated (MSG_TRUNC); the kernel's dump skbs are at most 32 KiB.
constexpr std::size_t kReceiveBuffer = 64 * 1024;
// Upper bound on datagrams per dump, so a kernel (or test double) that never sends NLMSG_DONE cannot keep us here.
constexpr std::size_t kMaxDatagrams = 1u << 20;
constexpr int kTimeoutSeconds = 5;

constexpr std::size_t align4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

template <typename T>
T load(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

// Attributes after the unix_diag_msg: only UNIX_DIAG_PEER matters. Returns false on a malformed attribute.
bool find_peer(const std::uint8_t* p, std::size_t size, std::uint32_t& peer) {
  while (size >= sizeof(nlattr)) {
    const auto attr = load<nlattr>(p);
    if (attr.nla_len < sizeof(nlattr) || attr.nla_len > size) return false;
    const std::size_t payload = attr.nla_len - sizeof(nlattr);
    if ((attr.nla_type & NLA_TYPE_MASK) == UNIX_DIAG_PEER) {
      if (payload < sizeof(std::uint32_t)) return false;
      peer = load<std::uint32_t>(p + sizeof(nlattr));
    }
    const std::size_t step = align4(attr.nla_len);
    if (step >= size) break;
    p += step;
    size -= step;
  }
  return true;
}

std::atomic<std::uint32_t> next_seq{1};

}  // namespace

DiagParse parse_unix_diag_datagram(const void* data, std::size_t size, std::uint32_t seq, UnixPeerTable& peers,
                                   std::string& error) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (size > 0) {
    if (size < sizeof(nlmsghdr)) {
      error = fmt::format("sock_diag reply: {} trailing bytes, shorter than a message header", size);
      return DiagParse::kError;
    }
    const auto header = load<nlmsghdr>(p);
    if (header.nlmsg_len < sizeof(nlmsghdr) || header.nlmsg_len > size) {
      error = fmt::format("sock_diag reply: message length {} outside 16..{}", header.nlmsg_len, size);
      return DiagParse::kError;
    }
    if (header.nlmsg_seq != seq) {
      error = fmt::format("sock_diag reply: sequence number {}, expected {}", header.nlmsg_seq, seq);
      return DiagParse::kError;
    }
    const std::uint8_t* payload = p + sizeof(nlmsghdr);
    const std::size_t payload_size = header.nlmsg_len - sizeof(nlmsghdr);
    switch (header.nlmsg_type) {
      case NLMSG_NOOP:
        break;
      case NLMSG_DONE:
        // A dump that failed half-way ends with DONE carrying the negative errno.
        if (payload_size >= sizeof(int) && load<int>(payload) < 0) {
          error = fmt::format("sock_diag dump of Unix sockets: {}", errno_text(-load<int>(payload)));
          return DiagParse::kError;
        }
        return DiagParse::kDone;
      case NLMSG_ERROR: {
        const int code = payload_size >= sizeof(int) ? load<int>(payload) : -EBADMSG;
        // ENOENT here means no unix_diag handler (CONFIG_UNIX_DIAG off and the module not loadable).
        error = code == 0 ? std::string("sock_diag reply: unexpected acknowledgement")
                          : fmt::format("sock_diag dump of Unix sockets: {}", errno_text(code < 0 ? -code : code));
        return DiagParse::kError;
      }
      case SOCK_DIAG_BY_FAMILY: {
        if (payload_size < sizeof(unix_diag_msg)) {
          error = fmt::format("sock_diag reply: {}-byte payload, shorter than unix_diag_msg", payload_size);
          return DiagParse::kError;
        }
        const auto msg = load<unix_diag_msg>(payload);
        std::uint32_t peer = 0;
        if (!find_peer(payload + sizeof(unix_diag_msg), payload_size - sizeof(unix_diag_msg), peer)) {
          error = fmt::format("sock_diag reply: malformed attribute for socket {}", msg.udiag_ino);
          return DiagParse::kError;
        }
        // Peer 0: the other end is closed (its file released) but this end is not yet.
        if (msg.udiag_ino != 0 && peer != 0) peers[msg.udiag_ino] = peer;
        break;
      }
      default:
        error = fmt::format("sock_diag reply: unexpected message type {}", header.nlmsg_type);
        return DiagParse::kError;
    }
    const std::size_t step = align4(header.nlmsg_len);
    if (step >= size) break;
    p += step;
    size -= step;
  }
  return DiagParse::kMore;
}

namespace {

bool dump_on(const Fd& sock, UnixPeerTable& peers, std::string& error, std::size_t max_sockets) {
  timeval timeout{};
  timeout.tv_sec = kTimeoutSeconds;
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    error = fmt::format("setsockopt(SO_RCVTIMEO) on sock_diag socket: {}", errno_text(errno));
    return false;
  }

  const std::uint32_t seq = next_seq.fetch_add(1);
  struct {
    nlmsghdr header;
    unix_diag_req req;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = seq;
  request.req.sdiag_family = AF_UNIX;
  request.req.udiag_states = 1u << kStateEstablished;
  request.req.udiag_show = UDIAG_SHOW_PEER;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    const ssize_t sent = ::sendto(sock.get(), &request, sizeof request, 0, reinterpret_cast<const sockaddr*>(&kernel),
                                  sizeof kernel);
    if (sent == static_cast<ssize_t>(sizeof request)) break;
    if (sent < 0 && errno == EINTR) continue;
    error = fmt::format("send sock_diag request: {}", sent < 0 ? errno_text(errno) : std::string("short write"));
    return false;
  }

  std::vector<std::uint8_t> buffer(kReceiveBuffer);
  for (std::size_t datagrams = 0; datagrams < kMaxDatagrams; ++datagrams) {
    sockaddr_nl from{};
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(sock.get(), &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = errno == EAGAIN || errno == EWOULDBLOCK
                  ? fmt::format("sock_diag dump: no reply within {} s", kTimeoutSeconds)
                  : fmt::format("receive sock_diag reply: {}", errno_text(errno));
      return false;
    }
    if (n == 0) {
      error = "sock_diag dump: connection closed before NLMSG_DONE";
      return false;
    }
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      error = fmt::format("sock_diag reply larger than {} bytes", buffer.size());
      return false;
    }
    if (from.nl_pid != 0) continue;  // not from the kernel
    switch (parse_unix_diag_datagram(buffer.data(), static_cast<std::size_t>(n), seq, peers, error)) {
      case DiagParse::kDone:
        return true;
      case DiagParse::kError:
        return false;
      case DiagParse::kMore:
        break;
    }
    if (peers.size() > max_sockets) {
      error = fmt::format("sock_diag dump: more than {} connected Unix sockets", max_sockets);
      return false;
    }
  }
  error = fmt::format("sock_diag dump: no NLMSG_DONE after {} datagrams", kMaxDatagrams);
  return false;
}

Fd open_diag_socket(int& error) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  error = fd < 0 ? errno : 0;
  return Fd(fd);
}

}  // namespace

bool dump_unix_peers(UnixPeerTable& peers, std::string& error, std::size_t max_sockets) {
  int open_error = 0;
  const Fd sock = open_diag_socket(open_error);
  if (!sock.valid()) {
    error = fmt::format("socket(AF_NETLINK, NETLINK_SOCK_DIAG): {}", errno_text(open_error));
    return false;
  }
  return dump_on(sock, peers, error, max_sockets);
}

bool dump_unix_peers_in(const std::string& netns_path, UnixPeerTable& peers, std::string& error,
                        std::size_t max_sockets) {
  const Fd sock = socket_in_netns(netns_path, 0, AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG, error);
  return sock.valid() && dump_on(sock, peers, error, max_sockets);
}

}  // namespace sp
