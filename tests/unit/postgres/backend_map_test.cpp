// Backend -> worker mapping: the pure join on synthetic tables, the sock_diag reply parser on hand-made and hostile
// datagrams, BackendMapper on a fake /proc tree, and one real sock_diag dump of a socketpair (no privilege needed).
#include "core/postgres/backend_map.h"
#include "core/proc/proc_parse.h"
#include "core/proc/socket_inventory.h"
#include "core/proc/unix_diag.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

namespace sp {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::uint64_t kHostNs = 4026531840;
constexpr std::uint64_t kPodNs = 4026532000;

// "ADDR:PORT" the way the kernel prints it in net/tcp(6): each 32-bit word of the address as a number in this
// machine's byte order. ADDR with a ':' is IPv6.
std::string kernel_endpoint(const std::string& endpoint) {
  const std::size_t colon = endpoint.rfind(':');
  const std::string host = endpoint.substr(0, colon);
  const int port = std::stoi(endpoint.substr(colon + 1));
  const bool v6 = host.find(':') != std::string::npos;
  unsigned char bytes[16] = {};
  if (::inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), bytes) != 1) throw std::runtime_error("bad address");
  std::string out;
  for (int word = 0; word < (v6 ? 4 : 1); ++word) {
    std::uint32_t value = 0;
    std::memcpy(&value, bytes + word * 4, sizeof value);
    out += fmt::format("{:08X}", value);
  }
  return out + fmt::format(":{:04X}", port);
}

std::string tcp_row(const std::string& local, const std::string& remote, int state, std::uint64_t inode) {
  return fmt::format("   0: {} {} {:02X} 00000000:00000000 00:00000000 00000000   998        0 {} 1 0\n",
                     kernel_endpoint(local), kernel_endpoint(remote), state, inode);
}

constexpr const char* kHeader =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

NetnsTcpTable table(std::uint64_t netns, const std::string& rows) {
  return NetnsTcpTable{netns, proc::parse_net_tcp(kHeader + rows)};
}

ProcessSockets process(int pid, std::vector<std::uint64_t> inodes, std::uint64_t netns = kHostNs) {
  return ProcessSockets{pid, netns, std::move(inodes)};
}

constexpr int kEst = proc::kTcpEstablished;

TEST(BackendMap, TcpIpv4) {
  SocketSnapshot s;
  s.workers = {process(100, {11, 12})};
  s.backends = {process(200, {21}), process(201, {22})};
  s.tcp = {table(kHostNs, tcp_row("0.0.0.0:5432", "0.0.0.0:0", proc::kTcpListen, 20) +
                              tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21) +
                              tcp_row("127.0.0.1:40001", "127.0.0.1:5432", kEst, 12) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40001", kEst, 22))};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}, BackendLink{201, 100, "tcp"}));
}

TEST(BackendMap, TcpIpv6) {
  SocketSnapshot s;
  s.workers = {process(100, {11})};
  s.backends = {process(200, {21})};
  s.tcp = {table(kHostNs, tcp_row("::1:41000", "::1:5432", kEst, 11) + tcp_row("::1:5432", "::1:41000", kEst, 21))};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}));
}

TEST(BackendMap, TcpIpv4ClientOfDualStackServer) {
  // PostgreSQL listening on "::" accepts an IPv4 client on an IPv6 socket: net/tcp6 shows ::ffff:127.0.0.1 while
  // the worker's AF_INET socket is in net/tcp.
  SocketSnapshot s;
  s.workers = {process(100, {11})};
  s.backends = {process(200, {21})};
  s.tcp = {table(kHostNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11)),
           table(kHostNs, tcp_row("::ffff:127.0.0.1:5432", "::ffff:127.0.0.1:40000", kEst, 21))};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}));
}

TEST(BackendMap, UnixPeers) {
  SocketSnapshot s;
  s.workers = {process(100, {11}), process(101, {12, 13})};
  s.backends = {process(200, {21}), process(201, {22}), process(202, {23})};
  s.unix_peers = {{11, 21}, {21, 11}, {12, 22}, {22, 12}, {13, 23}, {23, 13}};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "unix"}, BackendLink{201, 101, "unix"},
                                             BackendLink{202, 101, "unix"}));
}

TEST(BackendMap, TwoWorkersMixedTransports) {
  SocketSnapshot s;
  s.workers = {process(100, {11, 15}), process(101, {12})};
  s.backends = {process(200, {21}), process(201, {22}), process(202, {25})};
  s.tcp = {table(kHostNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21) +
                              tcp_row("127.0.0.1:40001", "127.0.0.1:5432", kEst, 12) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40001", kEst, 22))};
  s.unix_peers = {{15, 25}, {25, 15}};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}, BackendLink{201, 101, "tcp"},
                                             BackendLink{202, 100, "unix"}));
}

TEST(BackendMap, NonSynapseClientIsUnmapped) {
  // psql (pid 300) over TCP and over the Unix socket: its sockets are nobody's we were told about.
  SocketSnapshot s;
  s.workers = {process(100, {11})};
  s.backends = {process(200, {21}), process(201, {22}), process(202, {23})};
  s.tcp = {table(kHostNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21) +
                              tcp_row("127.0.0.1:50000", "127.0.0.1:5432", kEst, 31) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:50000", kEst, 22))};
  s.unix_peers = {{23, 32}, {32, 23}};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}));
}

TEST(BackendMap, ExitedWorkerIsUnmapped) {
  // The worker closed its end (FIN_WAIT2, no inode any more) and the backend has not noticed yet (CLOSE_WAIT). A
  // stale worker PID still in the list owns no socket of the connection, so nothing maps either.
  SocketSnapshot s;
  s.workers = {process(100, {})};
  s.backends = {process(200, {21}), process(201, {22})};
  s.tcp = {table(kHostNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", 0x05, 0) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40000", 0x08, 21))};
  s.unix_peers = {{22, 0}};  // the kernel reports peer 0 once the other end's file is released
  EXPECT_THAT(match_backends(s), IsEmpty());
}

TEST(BackendMap, LoopbackStaysInsideItsNamespace) {
  // Two pods, each with its own PostgreSQL on 127.0.0.1 and the very same 4-tuple.
  SocketSnapshot s;
  s.workers = {process(100, {11}, kHostNs), process(101, {12}, kPodNs)};
  s.backends = {process(200, {21}, kHostNs), process(201, {22}, kPodNs)};
  s.tcp = {table(kHostNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                              tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21)),
           table(kPodNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 12) +
                             tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 22))};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}, BackendLink{201, 101, "tcp"}));

  // Without the pod's backend end, its worker must not be matched to the host's backend through loopback.
  SocketSnapshot t;
  t.workers = {process(101, {12}, kPodNs)};
  t.backends = {process(200, {21}, kHostNs)};
  t.tcp = {table(kHostNs, tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21)),
           table(kPodNs, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 12))};
  EXPECT_THAT(match_backends(t), IsEmpty());
}

TEST(BackendMap, RoutableAddressesMatchAcrossNamespaces) {
  // Worker in a pod (10.1.0.5), PostgreSQL on the host (10.1.0.1): no NAT, so the tuples mirror each other.
  SocketSnapshot s;
  s.workers = {process(100, {11}, kPodNs)};
  s.backends = {process(200, {21}, kHostNs)};
  s.tcp = {table(kHostNs, tcp_row("10.1.0.1:5432", "10.1.0.5:40000", kEst, 21)),
           table(kPodNs, tcp_row("10.1.0.5:40000", "10.1.0.1:5432", kEst, 11))};
  EXPECT_THAT(match_backends(s), ElementsAre(BackendLink{200, 100, "tcp"}));

  // The same tuple in two other namespaces: ambiguous, so no link.
  s.workers.push_back(process(101, {12}, kPodNs + 1));
  s.tcp.push_back(table(kPodNs + 1, tcp_row("10.1.0.5:40000", "10.1.0.1:5432", kEst, 12)));
  EXPECT_THAT(match_backends(s), IsEmpty());
}

TEST(BackendMap, SocketSharedByTwoWorkersIsAmbiguous) {
  SocketSnapshot s;
  s.workers = {process(100, {11}), process(101, {11})};
  s.backends = {process(200, {21})};
  s.unix_peers = {{21, 11}};
  EXPECT_THAT(match_backends(s), IsEmpty());
}

TEST(BackendMap, EmptyInput) { EXPECT_THAT(match_backends(SocketSnapshot{}), IsEmpty()); }

// ---- sock_diag reply parser ----

class Datagram {
 public:
  // One SOCK_DIAG_BY_FAMILY message for socket `ino` with peer `peer` (0: no UNIX_DIAG_PEER attribute).
  Datagram& socket(std::uint32_t ino, std::uint32_t peer, std::uint32_t seq = 7) {
    unix_diag_msg msg{};
    msg.udiag_family = AF_UNIX;
    msg.udiag_type = SOCK_STREAM;
    msg.udiag_state = 1;
    msg.udiag_ino = ino;
    std::string payload(reinterpret_cast<const char*>(&msg), sizeof msg);
    payload += attribute(UNIX_DIAG_SHUTDOWN, std::string(1, '\0'));
    if (peer != 0) payload += attribute(UNIX_DIAG_PEER, std::string(reinterpret_cast<const char*>(&peer), 4));
    return message(SOCK_DIAG_BY_FAMILY, payload, seq);
  }
  Datagram& done(int code = 0, std::uint32_t seq = 7) {
    return message(NLMSG_DONE, std::string(reinterpret_cast<const char*>(&code), sizeof code), seq);
  }
  Datagram& error(int code) {
    nlmsgerr err{};
    err.error = code;
    return message(NLMSG_ERROR, std::string(reinterpret_cast<const char*>(&err), sizeof err), 7);
  }
  Datagram& message(std::uint16_t type, const std::string& payload, std::uint32_t seq) {
    nlmsghdr header{};
    header.nlmsg_len = static_cast<std::uint32_t>(sizeof header + payload.size());
    header.nlmsg_type = type;
    header.nlmsg_flags = NLM_F_MULTI;
    header.nlmsg_seq = seq;
    bytes_ += std::string(reinterpret_cast<const char*>(&header), sizeof header) + payload;
    bytes_.resize((bytes_.size() + 3) & ~std::size_t{3}, '\0');
    return *this;
  }
  std::string& bytes() { return bytes_; }

 private:
  static std::string attribute(std::uint16_t type, const std::string& value) {
    nlattr attr{};
    attr.nla_len = static_cast<std::uint16_t>(sizeof attr + value.size());
    attr.nla_type = type;
    std::string out = std::string(reinterpret_cast<const char*>(&attr), sizeof attr) + value;
    out.resize((out.size() + 3) & ~std::size_t{3}, '\0');
    return out;
  }
  std::string bytes_;
};

DiagParse parse(const std::string& bytes, UnixPeerTable& peers, std::string& error) {
  return parse_unix_diag_datagram(bytes.data(), bytes.size(), 7, peers, error);
}

TEST(BackendUnixDiagParse, MultiPartDump) {
  UnixPeerTable peers;
  std::string error;
  EXPECT_EQ(parse(Datagram().socket(11, 21).socket(21, 11).socket(30, 0).bytes(), peers, error), DiagParse::kMore);
  EXPECT_EQ(parse(Datagram().socket(12, 22).done().bytes(), peers, error), DiagParse::kDone);
  EXPECT_EQ(error, "");
  EXPECT_EQ(peers, (UnixPeerTable{{11, 21}, {21, 11}, {12, 22}}));
}

TEST(BackendUnixDiagParse, KernelErrors) {
  UnixPeerTable peers;
  std::string error;
  EXPECT_EQ(parse(Datagram().error(-ENOENT).bytes(), peers, error), DiagParse::kError);
  EXPECT_THAT(error, ::testing::HasSubstr("No such file or directory"));
  EXPECT_EQ(parse(Datagram().socket(11, 21).done(-EINTR).bytes(), peers, error), DiagParse::kError);
  EXPECT_THAT(error, ::testing::HasSubstr("Interrupted"));
  EXPECT_EQ(parse(Datagram().error(0).bytes(), peers, error), DiagParse::kError);
}

TEST(BackendUnixDiagParse, MalformedReplies) {
  UnixPeerTable peers;
  std::string error;
  // Foreign sequence number.
  EXPECT_EQ(parse(Datagram().socket(11, 21, 8).bytes(), peers, error), DiagParse::kError);
  // Truncated header and truncated message.
  std::string bytes = Datagram().socket(11, 21).bytes();
  EXPECT_EQ(parse(bytes.substr(0, 10), peers, error), DiagParse::kError);
  EXPECT_EQ(parse(bytes.substr(0, bytes.size() - 4), peers, error), DiagParse::kError);
  // nlmsg_len below the header size (would loop forever if trusted).
  bytes = Datagram().socket(11, 21).bytes();
  const std::uint32_t tiny = 4;
  std::memcpy(bytes.data(), &tiny, sizeof tiny);
  EXPECT_EQ(parse(bytes, peers, error), DiagParse::kError);
  // A payload too short for unix_diag_msg.
  EXPECT_EQ(parse(Datagram().message(SOCK_DIAG_BY_FAMILY, "abcd", 7).bytes(), peers, error), DiagParse::kError);
  // An attribute whose length runs past the message.
  bytes = Datagram().socket(11, 21).bytes();
  const std::uint16_t long_attr = 200;
  std::memcpy(bytes.data() + sizeof(nlmsghdr) + sizeof(unix_diag_msg), &long_attr, sizeof long_attr);
  EXPECT_EQ(parse(bytes, peers, error), DiagParse::kError);
  // A peer attribute with a 2-byte value.
  unix_diag_msg msg{};
  msg.udiag_ino = 5;
  std::string payload(reinterpret_cast<const char*>(&msg), sizeof msg);
  nlattr attr{};
  attr.nla_len = 6;
  attr.nla_type = UNIX_DIAG_PEER;
  payload += std::string(reinterpret_cast<const char*>(&attr), sizeof attr) + "xx";
  EXPECT_EQ(parse(Datagram().message(SOCK_DIAG_BY_FAMILY, payload, 7).bytes(), peers, error), DiagParse::kError);
  // Unknown message type.
  EXPECT_EQ(parse(Datagram().message(99, "", 7).bytes(), peers, error), DiagParse::kError);
  EXPECT_THAT(peers, IsEmpty());
}

TEST(BackendUnixDiagParse, RandomBytesNeverCrash) {
  std::mt19937 rng(99);
  const std::string valid = Datagram().socket(11, 21).socket(21, 11).done().bytes();
  for (int round = 0; round < 5000; ++round) {
    std::string bytes = valid;
    if (round % 2 == 0) bytes.resize(rng() % (bytes.size() + 1));
    for (int flips = 1 + static_cast<int>(rng() % 4); flips > 0 && !bytes.empty(); --flips) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    UnixPeerTable peers;
    std::string error;
    EXPECT_NO_THROW(parse_unix_diag_datagram(bytes.data(), bytes.size(), 7, peers, error));
  }
}

// The kernel itself: a socketpair's two ends are each other's peers. Needs no privilege.
TEST(BackendUnixDiag, DumpsSocketpairPeers) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  struct stat a {}, b {};
  ASSERT_EQ(::fstat(fds[0], &a), 0);
  ASSERT_EQ(::fstat(fds[1], &b), 0);
  UnixPeerTable peers;
  std::string error;
  const bool ok = dump_unix_peers(peers, error);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_TRUE(ok) << error;
  EXPECT_EQ(peers[a.st_ino], b.st_ino);
  EXPECT_EQ(peers[b.st_ino], a.st_ino);
}

// ---- BackendMapper over a fake /proc tree ----

class FakeProc {
 public:
  FakeProc() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sp-backend-map-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root_ = pattern;
  }
  ~FakeProc() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  const std::string& root() const { return root_; }

  void add(int pid, std::uint64_t netns, const std::vector<std::uint64_t>& sockets, const std::string& tcp,
           const std::string& tcp6 = "") {
    const auto dir = std::filesystem::path(root_) / std::to_string(pid);
    std::filesystem::create_directories(dir / "fd");
    std::filesystem::create_directories(dir / "ns");
    std::filesystem::create_directories(dir / "net");
    std::filesystem::create_symlink(fmt::format("net:[{}]", netns), dir / "ns/net");
    int fd = 3;
    std::filesystem::create_symlink("/dev/null", dir / "fd/0");
    std::filesystem::create_symlink("pipe:[999]", dir / "fd/1");
    for (const auto inode : sockets) {
      std::filesystem::create_symlink(fmt::format("socket:[{}]", inode), dir / "fd" / std::to_string(fd++));
    }
    std::ofstream(dir / "net/tcp") << kHeader << tcp;
    if (!tcp6.empty()) std::ofstream(dir / "net/tcp6") << kHeader << tcp6;
  }

 private:
  std::string root_;
};

TEST(BackendMapper, FakeProcTree) {
  FakeProc proc;
  const std::string host_tcp = tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                               tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21) +
                               tcp_row("127.0.0.1:5432", "127.0.0.1:50000", kEst, 23);
  proc.add(100, kHostNs, {11, 15}, host_tcp);
  proc.add(101, kHostNs, {12}, host_tcp);
  proc.add(200, kHostNs, {21}, host_tcp);
  proc.add(201, kHostNs, {22}, host_tcp);
  proc.add(202, kHostNs, {23}, host_tcp);  // psql over TCP
  int unix_calls = 0;
  BackendMapper mapper(proc.root(), [&](int pid, std::uint64_t netns, UnixPeerTable& peers, std::string&) {
    ++unix_calls;
    EXPECT_EQ(netns, kHostNs);
    EXPECT_TRUE(pid == 100 || pid == 101);
    peers = {{22, 12}, {12, 22}};
    return true;
  });
  std::string error;
  // 999 does not exist (exited): not an error.
  const auto links = mapper.map({100, 101, 999}, {200, 201, 202, 998}, error);
  EXPECT_EQ(error, "");
  EXPECT_THAT(links, ElementsAre(BackendLink{200, 100, "tcp"}, BackendLink{201, 101, "unix"}));
  EXPECT_EQ(unix_calls, 1);  // one dump per namespace
}

TEST(BackendMapper, AllTcpNeedsNoUnixDump) {
  FakeProc proc;
  const std::string tcp6 = tcp_row("::1:40000", "::1:5432", kEst, 11) + tcp_row("::1:5432", "::1:40000", kEst, 21);
  proc.add(100, kHostNs, {11}, "", tcp6);
  proc.add(200, kHostNs, {21}, "", tcp6);
  bool called = false;
  BackendMapper mapper(proc.root(), [&](int, std::uint64_t, UnixPeerTable&, std::string&) { return called = true; });
  std::string error;
  EXPECT_THAT(mapper.map({100}, {200}, error), ElementsAre(BackendLink{200, 100, "tcp"}));
  EXPECT_EQ(error, "");
  EXPECT_FALSE(called);
}

TEST(BackendMapper, ReportsUnixDumpFailureAndKeepsTcp) {
  FakeProc proc;
  const std::string tcp = tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                          tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21);
  proc.add(100, kHostNs, {11}, tcp);
  proc.add(200, kHostNs, {21}, tcp);
  proc.add(201, kHostNs, {22}, tcp);
  BackendMapper mapper(proc.root(), [](int, std::uint64_t, UnixPeerTable&, std::string& error) {
    error = "setns: Operation not permitted";
    return false;
  });
  std::string error;
  EXPECT_THAT(mapper.map({100}, {200, 201}, error), ElementsAre(BackendLink{200, 100, "tcp"}));
  EXPECT_THAT(error, ::testing::HasSubstr("Operation not permitted"));
}

TEST(BackendMapper, TablesPerNamespace) {
  // A pod with its own namespace: its table is read through one of its own PIDs, not the host's.
  FakeProc proc;
  proc.add(100, kPodNs, {11}, tcp_row("127.0.0.1:40000", "127.0.0.1:5432", kEst, 11) +
                                  tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 21));
  proc.add(200, kPodNs, {21}, "");  // a stale copy: the pod's table must come from the first PID that reads
  proc.add(300, kHostNs, {31}, tcp_row("127.0.0.1:5432", "127.0.0.1:40000", kEst, 31));
  BackendMapper mapper(proc.root(), [](int, std::uint64_t, UnixPeerTable&, std::string&) { return true; });
  std::string error;
  EXPECT_THAT(mapper.map({100}, {200, 300}, error), ElementsAre(BackendLink{200, 100, "tcp"}));
}

}  // namespace
}  // namespace sp
