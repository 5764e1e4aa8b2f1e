// Minimal JSON writing helpers (string escaping) for `workers --json`, traces and reports. Output is always valid
// UTF-8-agnostic JSON: control characters and bytes that are not printable ASCII inside strings are escaped.
#pragma once

#include <string>
#include <string_view>

namespace sp {

// Returns `s` as a JSON string literal, quotes included.
std::string json_quote(std::string_view s);

}  // namespace sp
