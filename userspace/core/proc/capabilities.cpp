#include "core/proc/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sp {

std::string_view cap_name(Cap cap) {
  switch (cap) {
    case Cap::DacReadSearch: return "CAP_DAC_READ_SEARCH";
    case Cap::NetBindService: return "CAP_NET_BIND_SERVICE";
    case Cap::SysPtrace: return "CAP_SYS_PTRACE";
    case Cap::SysAdmin: return "CAP_SYS_ADMIN";
    case Cap::SysResource: return "CAP_SYS_RESOURCE";
    case Cap::Perfmon: return "CAP_PERFMON";
    case Cap::Bpf: return "CAP_BPF";
  }
  return "CAP_?";
}

std::optional<std::uint64_t> parse_cap_eff(std::string_view text) {
  constexpr std::string_view kKey = "CapEff:";
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.starts_with(kKey)) continue;
    line.remove_prefix(kKey.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    std::uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), value, 16);
    if (ec != std::errc() || ptr == line.data()) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> own_effective_caps() {
  std::ifstream in("/proc/self/status");
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_cap_eff(ss.str());
}

std::optional<std::uint64_t> restrict_capabilities(std::uint64_t keep, std::string& error) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) {
    error = std::string("capget: ") + std::strerror(errno);
    return std::nullopt;
  }
  auto join = [](std::uint32_t lo, std::uint32_t hi) { return std::uint64_t{lo} | (std::uint64_t{hi} << 32); };
  const std::uint64_t effective = join(data[0].effective, data[1].effective);
  // The bounding set first: dropping from it needs CAP_SETPCAP, which the capset below removes.
  if ((effective >> CAP_SETPCAP) & 1U) {
    for (int cap = 0; cap < 64; ++cap) {
      if ((keep >> cap) & 1U) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {  // EINVAL: beyond the kernel's last cap
        error = "drop capability " + std::to_string(cap) + " from the bounding set: " + std::strerror(errno);
        return std::nullopt;
      }
    }
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);  // fails only on kernels without ambient caps
  for (int i = 0; i < 2; ++i) {
    const auto k = static_cast<std::uint32_t>(keep >> (32 * i));
    data[i].effective &= k;
    data[i].permitted &= k;
    data[i].inheritable &= k;
  }
  if (syscall(SYS_capset, &header, data) != 0) {
    error = std::string("capset: ") + std::strerror(errno);
    return std::nullopt;
  }
  return join(data[0].effective, data[1].effective);
}

std::string cap_names(std::uint64_t mask) {
  std::string out;
  for (Cap c : {Cap::DacReadSearch, Cap::NetBindService, Cap::SysPtrace, Cap::SysAdmin, Cap::SysResource,
                Cap::Perfmon, Cap::Bpf}) {
    if (!has_cap(mask, c)) continue;
    if (!out.empty()) out += ", ";
    out += cap_name(c);
  }
  return out.empty() ? "none" : out;
}

}  // namespace sp
