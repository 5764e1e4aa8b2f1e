// Linux capabilities of the agent, read from /proc/self/status (CapEff), so that `doctor` and start-up errors can say
// exactly which capability a probe family is missing instead of a bare EPERM.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sp {

// Capability numbers from <linux/capability.h>; spelled out so the pure core needs no kernel headers.
enum class Cap : int {
  DacReadSearch = 2,
  SysPtrace = 19,
  SysAdmin = 21,
  SysResource = 24,
  Perfmon = 38,
  Bpf = 39,
};

std::string_view cap_name(Cap cap);

// Parses the hexadecimal CapEff: line of a /proc/PID/status text.
std::optional<std::uint64_t> parse_cap_eff(std::string_view status_text);

inline bool has_cap(std::uint64_t mask, Cap cap) { return (mask >> static_cast<int>(cap)) & 1U; }

// The effective set of the calling process, or nullopt when /proc/self/status cannot be read.
std::optional<std::uint64_t> own_effective_caps();

}  // namespace sp
