#include "core/proc/proc_parse.h"

#include <cctype>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>
#include <limits>

namespace sp::proc {
namespace {

// Splits on runs of spaces/tabs.
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    fn(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

std::optional<std::uint64_t> parse_hex(std::string_view text) {
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<int> parse_int(std::string_view text) {
  const auto value = parse_u64(text);
  if (!value || *value > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return std::nullopt;
  return static_cast<int>(*value);
}

}  // namespace

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 10);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::vector<std::string> split_cmdline(std::string_view raw) {
  std::vector<std::string> args;
  if (raw.empty()) return args;
  if (raw.back() == '\0') raw.remove_suffix(1);
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = raw.find('\0', start);
    args.emplace_back(raw.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return args;
}

std::optional<Stat> parse_stat(std::string_view text) {
  const std::size_t open = text.find('(');
  const std::size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  Stat stat;
  stat.comm = std::string(text.substr(open + 1, close - open - 1));
  const auto rest = fields(text.substr(close + 1));
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  constexpr std::size_t kPpid = 4 - 3;
  constexpr std::size_t kStartTime = 22 - 3;
  // The kernel writes a comm of at most 64 bytes (workqueue workers' names are the longest) and a letter as state.
  if (close - open - 1 > 64) return std::nullopt;
  if (rest.size() <= kStartTime || rest[0].size() != 1) return std::nullopt;
  if (!std::isalpha(static_cast<unsigned char>(rest[0][0]))) return std::nullopt;
  const auto ppid = parse_int(rest[kPpid]);
  const auto start_time = parse_u64(rest[kStartTime]);
  if (!ppid || !start_time) return std::nullopt;
  stat.state = rest[0][0];
  stat.ppid = *ppid;
  stat.start_time = *start_time;
  return stat;
}

std::vector<int> parse_nspid(std::string_view status) {
  std::vector<int> pids;
  for_each_line(status, [&](std::string_view line) {
    constexpr std::string_view kKey = "NSpid:";
    if (!pids.empty() || !line.starts_with(kKey)) return;
    for (const auto field : fields(line.substr(kKey.size()))) {
      const auto pid = parse_int(field);
      if (!pid || *pid <= 0) {
        pids.clear();
        return;
      }
      pids.push_back(*pid);
    }
  });
  return pids;
}

std::optional<std::string> environ_value(std::string_view environ, std::string_view name) {
  for (const auto& entry : split_cmdline(environ)) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

std::string strip_deleted(std::string_view path) {
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.remove_suffix(kDeleted.size());
  return std::string(path);
}

std::vector<Mapping> parse_maps(std::string_view text) {
  std::vector<Mapping> maps;
  for_each_line(text, [&](std::string_view line) {
    // address perms offset dev inode [path]; the path may contain spaces, so only the first five fields are split.
    std::size_t i = 0;
    std::string_view perms;
    for (int field = 0; field < 5; ++field) {
      while (i < line.size() && line[i] == ' ') ++i;
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ') ++i;
      if (i == start) return;  // malformed row
      if (field == 1) perms = line.substr(start, i - start);
    }
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    Mapping mapping;
    mapping.perms = std::string(perms);
    mapping.path = strip_deleted(line.substr(i));
    maps.push_back(std::move(mapping));
  });
  return maps;
}

namespace {

// One "ADDR:PORT" column of net/tcp(6). ADDR is 8 (IPv4) or 32 (IPv6) hex digits: each group of 8 is one 32-bit
// word of the address as it sits in kernel memory, printed as a number, so copying the number back into memory on
// this machine restores the network-order bytes whatever the endianness.
bool parse_tcp_endpoint(std::string_view text, IpAddress& address, int& port) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view hex = text.substr(0, colon);
  const auto port_value = parse_hex(text.substr(colon + 1));
  if (!port_value || *port_value > 0xFFFF) return false;
  if (hex.size() != 8 && hex.size() != 32) return false;
  address = IpAddress{};
  std::size_t offset = 0;
  if (hex.size() == 8) {  // IPv4 -> ::ffff:a.b.c.d
    address[10] = 0xFF;
    address[11] = 0xFF;
    offset = 12;
  }
  for (std::size_t group = 0; group * 8 < hex.size(); ++group) {
    const auto word = parse_hex(hex.substr(group * 8, 8));
    if (!word) return false;
    const auto value = static_cast<std::uint32_t>(*word);
    std::memcpy(address.data() + offset + group * 4, &value, sizeof value);
  }
  port = static_cast<int>(*port_value);
  return true;
}

bool is_v4_mapped(const IpAddress& address) {
  for (std::size_t i = 0; i < 10; ++i) {
    if (address[i] != 0) return false;
  }
  return address[10] == 0xFF && address[11] == 0xFF;
}

}  // namespace

std::vector<TcpSocket> parse_net_tcp(std::string_view text) {
  std::vector<TcpSocket> sockets;
  for_each_line(text, [&](std::string_view line) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    const auto f = fields(line);
    if (f.size() < 10 || !f[0].ends_with(':')) return;  // header or malformed
    TcpSocket socket;
    if (!parse_tcp_endpoint(f[1], socket.local_addr, socket.local_port)) return;
    if (!parse_tcp_endpoint(f[2], socket.remote_addr, socket.remote_port)) return;
    const auto state = parse_hex(f[3]);
    const auto inode = parse_u64(f[9]);
    if (!state || *state > 0xFF || !inode) return;
    socket.state = static_cast<int>(*state);
    socket.inode = *inode;
    sockets.push_back(socket);
  });
  return sockets;
}

bool is_loopback(const IpAddress& address) {
  if (is_v4_mapped(address)) return address[12] == 127;
  for (std::size_t i = 0; i < 15; ++i) {
    if (address[i] != 0) return false;
  }
  return address[15] == 1;
}

std::string format_ip(const IpAddress& address) {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (is_v4_mapped(address)) {
    ::inet_ntop(AF_INET, address.data() + 12, buffer, sizeof buffer);
  } else {
    ::inet_ntop(AF_INET6, address.data(), buffer, sizeof buffer);
  }
  return buffer;
}

std::optional<std::uint64_t> socket_inode(std::string_view link) {
  constexpr std::string_view kPrefix = "socket:[";
  if (!link.starts_with(kPrefix) || !link.ends_with(']')) return std::nullopt;
  return parse_u64(link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1));
}

std::optional<std::uint64_t> namespace_inode(std::string_view link, std::string_view type) {
  if (!link.starts_with(type) || !link.substr(type.size()).starts_with(":[") || !link.ends_with(']')) {
    return std::nullopt;
  }
  return parse_u64(link.substr(type.size() + 2, link.size() - type.size() - 3));
}

std::string_view basename(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace sp::proc
