// The probes' clock in userspace: BPF stamps events with CLOCK_MONOTONIC (bpf_ktime_get_ns), which is what
// std::chrono::steady_clock reads on Linux.
#pragma once

#include <chrono>
#include <cstdint>

namespace sp {

inline std::uint64_t monotonic_ns(std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now()) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace sp
