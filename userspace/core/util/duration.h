// Human durations on the command line and in config files: "250ms", "5s", "1m30s", "2h"; a bare number is seconds.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sp {

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::nanoseconds d);

}  // namespace sp
