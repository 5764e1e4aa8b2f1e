// Linux capabilities of the agent, read from /proc/self/status (CapEff), so that `doctor` and start-up errors can say
// exactly which capability a probe family is missing instead of a bare EPERM.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sp {

// Capability numbers from <linux/capability.h>; spelled out so the pure core needs no kernel headers.
enum class Cap : int {
  DacReadSearch = 2,
  NetBindService = 10,
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

inline std::uint64_t cap_mask(std::initializer_list<Cap> caps) {
  std::uint64_t m = 0;
  for (Cap c : caps) m |= std::uint64_t{1} << static_cast<int>(c);
  return m;
}

// Keeps at most `keep` in the calling thread's effective, permitted and inheritable sets, removes everything else from
// its bounding set (when it may) and clears its ambient set, so that neither this process nor anything it could exec
// regains the rest. Capabilities are per thread: call it before any thread starts (threads inherit the result).
// Returns the effective set kept, or nullopt with `error` set.
std::optional<std::uint64_t> restrict_capabilities(std::uint64_t keep, std::string& error);

// "CAP_SYS_ADMIN, CAP_SYS_PTRACE" for the capabilities named in this module that `mask` holds.
std::string cap_names(std::uint64_t mask);

}  // namespace sp
