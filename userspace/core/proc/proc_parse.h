// Parsers for the text of /proc/PID files (cmdline, stat, status, environ, maps, net/tcp, fd and ns links). Pure
// functions over bytes: the input is controlled by other processes (a cmdline can hold anything), so nothing here
// assumes UTF-8, terminators or sane lengths, and nothing throws on garbage.
#pragma once

#include <array>
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

// An IP address as 16 bytes in network order. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d), the form a
// dual-stack IPv6 socket shows for an IPv4 peer in net/tcp6, so both tables compare directly.
using IpAddress = std::array<std::uint8_t, 16>;

struct TcpSocket {
  int local_port = 0;
  int state = 0;  // 0x0A = LISTEN, 0x01 = ESTABLISHED
  std::uint64_t inode = 0;  // 0 for sockets no file refers to any more (TIME_WAIT, orphans)
  IpAddress local_addr{};
  IpAddress remote_addr{};
  int remote_port = 0;
};
inline constexpr int kTcpEstablished = 0x01;
inline constexpr int kTcpListen = 0x0A;
// /proc/PID/net/tcp or tcp6 (header line skipped, malformed rows ignored). Addresses are the kernel's raw words
// printed with %08X, i.e. in the machine's byte order: they are converted back to network order here.
std::vector<TcpSocket> parse_net_tcp(std::string_view text);

// True for 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8: addresses that only mean something inside one network
// namespace.
bool is_loopback(const IpAddress& address);

// "127.0.0.1" or "::1" style text for messages (IPv4-mapped addresses are shown as IPv4).
std::string format_ip(const IpAddress& address);

// "socket:[12345]" -> 12345.
std::optional<std::uint64_t> socket_inode(std::string_view link);

// A /proc/PID/ns/* link ("net:[4026531840]") -> its inode, when the link is of namespace type `type` ("net").
std::optional<std::uint64_t> namespace_inode(std::string_view link, std::string_view type);

// Last path component ("/usr/bin/python3" -> "python3").
std::string_view basename(std::string_view path);

// Strict decimal parse of a whole string (no sign, no spaces); nullopt on anything else or overflow.
std::optional<std::uint64_t> parse_u64(std::string_view text);

}  // namespace sp::proc
