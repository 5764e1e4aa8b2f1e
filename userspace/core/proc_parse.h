// Parsers for the text of /proc/PID files (cmdline, stat, status, environ, maps, net/tcp, fd links). Pure functions
// over bytes: the input is controlled by other processes (a cmdline can hold anything), so nothing here assumes
// UTF-8, terminators or sane lengths, and nothing throws on garbage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sp::proc {

// NUL-separated arguments. The final NUL terminates the last argument (it may be missing); interior empty arguments
// are kept. Empty input (kernel threads, zombies) gives no arguments.
std::vector<std::string> split_cmdline(std::string_view raw);

struct Stat {
  std::string comm;
  char state = '?';
  int ppid = 0;
  std::uint64_t start_time = 0;  // field 22, clock ticks since boot
};
// /proc/PID/stat. comm may contain spaces and parentheses, so fields are counted after the LAST ')'.
std::optional<Stat> parse_stat(std::string_view text);

// The `NSpid:` line of /proc/PID/status, outermost namespace first. Empty if absent (kernels < 4.1) or malformed.
std::vector<int> parse_nspid(std::string_view status);

// Value of NAME in a NUL-separated environment block.
std::optional<std::string> environ_value(std::string_view environ, std::string_view name);

struct Mapping {
  std::string perms;  // "r-xp"
  std::string path;   // file path as the target sees it, " (deleted)" removed; empty for anonymous mappings
};
std::vector<Mapping> parse_maps(std::string_view text);

// Removes the " (deleted)" suffix that /proc adds to links and mappings of unlinked files.
std::string strip_deleted(std::string_view path);

struct TcpSocket {
  int local_port = 0;
  int state = 0;  // 0x0A = LISTEN
  std::uint64_t inode = 0;
};
inline constexpr int kTcpListen = 0x0A;
// /proc/PID/net/tcp or tcp6 (header line skipped, malformed rows ignored).
std::vector<TcpSocket> parse_net_tcp(std::string_view text);

// "socket:[12345]" -> 12345.
std::optional<std::uint64_t> socket_inode(std::string_view link);

// Last path component ("/usr/bin/python3" -> "python3").
std::string_view basename(std::string_view path);

// Strict decimal parse of a whole string (no sign, no spaces); nullopt on anything else or overflow.
std::optional<std::uint64_t> parse_u64(std::string_view text);

}  // namespace sp::proc
