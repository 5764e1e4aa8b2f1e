// The /proc text parsers on real-looking and hostile input.
#include "core/proc_parse.h"

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
    });
  }
}

}  // namespace
}  // namespace sp::proc
