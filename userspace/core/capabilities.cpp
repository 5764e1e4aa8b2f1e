#include "core/capabilities.h"

#include <charconv>
#include <fstream>
#include <sstream>

namespace sp {

std::string_view cap_name(Cap cap) {
  switch (cap) {
    case Cap::DacReadSearch: return "CAP_DAC_READ_SEARCH";
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

}  // namespace sp
