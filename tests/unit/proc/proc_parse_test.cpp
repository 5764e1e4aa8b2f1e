// The /proc text parsers on real-looking and hostile input.
#include "core/proc/proc_parse.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

namespace sp::proc {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace std::string_literals;

TEST(ProcParse, SplitCmdline) {
  EXPECT_THAT(split_cmdline(""), IsEmpty());
  EXPECT_THAT(split_cmdline("python3\0-m\0x\0"s), ElementsAre("python3", "-m", "x"));
  EXPECT_THAT(split_cmdline("python3\0-m\0x"s), ElementsAre("python3", "-m", "x"));  // no trailing NUL
  EXPECT_THAT(split_cmdline("a\0\0b\0"s), ElementsAre("a", "", "b"));
  EXPECT_THAT(split_cmdline("\0"s), ElementsAre(""));
  EXPECT_THAT(split_cmdline("postgres: checkpointer  "), ElementsAre("postgres: checkpointer  "));
  EXPECT_THAT(split_cmdline("\xff\xfe\0\x01"s), ElementsAre("\xff\xfe", "\x01"));
}

TEST(ProcParse, StatCommWithSpacesAndParens) {
  const auto stat = parse_stat("1100 (python (x) y) S 42 1 1 0 -1 4194560 100 0 0 0 10 5 0 0 20 0 4 0 11000 1 2\n");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->comm, "python (x) y");
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->ppid, 42);
  EXPECT_EQ(stat->start_time, 11000u);
  // ") 1 2 3" inside comm must not be taken as fields.
  const auto tricky = parse_stat("7 (a) S 9 ) R 3 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0");
  ASSERT_TRUE(tricky);
  EXPECT_EQ(tricky->comm, "a) S 9 ");
  EXPECT_EQ(tricky->ppid, 3);
  EXPECT_EQ(tricky->start_time, 555u);
}

TEST(ProcParse, StatGarbage) {
  for (const char* text : {"", "1 (x", "1 x) S 1", "1 (x) S 1 1", "1 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
                           "1 (x) S -1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
                           "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999999"}) {
    EXPECT_FALSE(parse_stat(text)) << text;
  }
}

TEST(ProcParse, NsPid) {
  EXPECT_THAT(parse_nspid("Name:\tx\nNSpid:\t4021\t21\t1\nNSpgid:\t1\n"), ElementsAre(4021, 21, 1));
  EXPECT_THAT(parse_nspid("Name:\tx\nNSpid:\t77\n"), ElementsAre(77));
  EXPECT_THAT(parse_nspid("Name:\tx\n"), IsEmpty());
  EXPECT_THAT(parse_nspid("NSpid:\t12\tjunk\n"), IsEmpty());
}

TEST(ProcParse, Environ) {
  const std::string env = "PATH=/bin\0SUPERVISOR_PROCESS_NAME=synapse_main\0SUPERVISOR_PROCESS_NAMEX=no\0"s;
  EXPECT_EQ(environ_value(env, "SUPERVISOR_PROCESS_NAME"), "synapse_main");
  EXPECT_EQ(environ_value(env, "HOME"), std::nullopt);
  EXPECT_EQ(environ_value("A=\0"s, "A"), "");
}

TEST(ProcParse, Maps) {
  const auto maps = parse_maps(
      "55d0-55d1 r--p 00000000 fe:01 123   /usr/bin/python3.11\n"
      "7f00-7f01 r-xp 00001000 fe:01 456   /srv/my dir/libpq.so.5.15 (deleted)\n"
      "7f02-7f03 rw-p 00000000 00:00 0 \n"
      "7ffd-7ffe r-xp 00000000 00:00 0                          [vdso]\n"
      "garbage\n");
  ASSERT_EQ(maps.size(), 4u);
  EXPECT_EQ(maps[0].perms, "r--p");
  EXPECT_EQ(maps[0].path, "/usr/bin/python3.11");
  EXPECT_EQ(maps[1].path, "/srv/my dir/libpq.so.5.15");
  EXPECT_EQ(maps[2].path, "");
  EXPECT_EQ(maps[3].path, "[vdso]");
}

TEST(ProcParse, NetTcp) {
  const auto sockets = parse_net_tcp(
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 5001 1 0\n"
      "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000   998        0 5002 1 0\n"
      "   2: 00000000000000000000000001000000:238D 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 6001\n"
      "   3: bad row\n");
  ASSERT_EQ(sockets.size(), 3u);
  EXPECT_EQ(sockets[0].local_port, 9000);
  EXPECT_EQ(sockets[0].state, kTcpListen);
  EXPECT_EQ(sockets[0].inode, 5001u);
  EXPECT_EQ(sockets[1].state, 1);
  EXPECT_EQ(sockets[2].local_port, 9101);
  EXPECT_EQ(sockets[2].inode, 6001u);
}

IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return IpAddress{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, a, b, c, d};
}

TEST(ProcParse, NetTcpAddresses) {
  // Rows as an x86 kernel prints them: each 32-bit word of the address in little-endian order.
  const auto sockets = parse_net_tcp(
      "   0: 0100007F:1538 0200007F:9C40 01 00000000:00000000 00:00000000 00000000   998        0 5001 1 0\n"
      "   0: 00000000000000000000000001000000:1538 00000000000000000000000001000000:9C41 01 0:0 0:0 0 0 0 6001\n"
      "   1: 0000000000000000FFFF00000100007F:1538 0000000000000000FFFF00000A00000A:9C42 06 0:0 0:0 0 0 0 0\n"
      "   2: 0080DCFE000000000000000001000000:0050 0100007F:0050 01 0:0 0:0 0 0 0 7001\n"  // v4 remote in v6 row: ok
      "   3: 0100007:1538 0200007F:9C40 01 0:0 0:0 0 0 0 7002\n"                      // 7 hex digits: dropped
      "   4: 0100007F:1538 0200007F 01 0:0 0:0 0 0 0 7003\n");                        // no remote port: dropped
  ASSERT_EQ(sockets.size(), 4u);
  EXPECT_EQ(sockets[0].local_addr, v4(127, 0, 0, 1));
  EXPECT_EQ(sockets[0].local_port, 5432);
  EXPECT_EQ(sockets[0].remote_addr, v4(127, 0, 0, 2));
  EXPECT_EQ(sockets[0].remote_port, 40000);
  EXPECT_EQ(sockets[0].state, kTcpEstablished);
  EXPECT_EQ(format_ip(sockets[0].remote_addr), "127.0.0.2");
  EXPECT_EQ(format_ip(sockets[1].local_addr), "::1");
  EXPECT_TRUE(is_loopback(sockets[1].local_addr));
  EXPECT_EQ(sockets[1].remote_port, 40001);
  // An IPv4 client of a dual-stack IPv6 listener compares equal to the client's own IPv4 row.
  EXPECT_EQ(sockets[2].local_addr, v4(127, 0, 0, 1));
  EXPECT_EQ(sockets[2].remote_addr, v4(10, 0, 0, 10));
  EXPECT_FALSE(is_loopback(sockets[2].remote_addr));
  EXPECT_EQ(sockets[2].inode, 0u);
  EXPECT_EQ(format_ip(sockets[3].local_addr), "fedc:8000::1");
}

TEST(ProcParse, NamespaceInode) {
  EXPECT_EQ(namespace_inode("net:[4026531840]", "net"), 4026531840u);
  EXPECT_EQ(namespace_inode("mnt:[4026531840]", "net"), std::nullopt);
  EXPECT_EQ(namespace_inode("net:[]", "net"), std::nullopt);
  EXPECT_EQ(namespace_inode("net:[", "net"), std::nullopt);
  EXPECT_EQ(namespace_inode("net]", "net"), std::nullopt);
  EXPECT_EQ(namespace_inode("net:[12]x", "net"), std::nullopt);
}

TEST(ProcParse, SocketInodeAndBasename) {
  EXPECT_EQ(socket_inode("socket:[12345]"), 12345u);
  EXPECT_EQ(socket_inode("pipe:[12345]"), std::nullopt);
  EXPECT_EQ(socket_inode("socket:[]"), std::nullopt);
  EXPECT_EQ(socket_inode("socket:[12x]"), std::nullopt);
  EXPECT_EQ(basename("/usr/bin/python3"), "python3");
  EXPECT_EQ(basename("python3"), "python3");
  EXPECT_EQ(basename("/usr/bin/"), "");
  EXPECT_EQ(strip_deleted("/usr/bin/python3 (deleted)"), "/usr/bin/python3");
}

// Random bytes through every parser: nothing may crash or throw.
TEST(ProcParse, RandomInputNeverCrashes) {
  std::mt19937 rng(1234);
  const std::string alphabet = "0123456789abcdefABCDEF ():\n\t\0/[]-xrwp.socketNSpid="s + "\xff\xc3";
  for (int round = 0; round < 2000; ++round) {
    std::string text(rng() % 300, ' ');
    for (auto& c : text) c = alphabet[rng() % alphabet.size()];
    EXPECT_NO_THROW({
      split_cmdline(text);
      parse_stat(text);
      parse_nspid(text);
      environ_value(text, "A");
      parse_maps(text);
      parse_net_tcp(text);
      socket_inode(text);
      namespace_inode(text, "net");
    });
  }
}

}  // namespace
}  // namespace sp::proc

TEST(ProcParse, StatAndNspidRejectWhatTheKernelNeverWrites) {
  const std::string tail = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\n";
  EXPECT_TRUE(sp::proc::parse_stat("1 (" + std::string(64, 'x') + ")" + tail));
  EXPECT_FALSE(sp::proc::parse_stat("1 (" + std::string(65, 'x') + ")" + tail)) << "comm is at most 64 bytes";
  EXPECT_FALSE(sp::proc::parse_stat("1 (x) \x01 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\n"))
      << "the state is a letter";
  EXPECT_TRUE(sp::proc::parse_nspid("NSpid:\t0\t3\n").empty());
  EXPECT_TRUE(sp::proc::parse_nspid("NSpid:\t-4\n").empty());
  EXPECT_EQ(sp::proc::parse_nspid("NSpid:\t4242\t7\n"), (std::vector<int>{4242, 7}));
}
