#include "core/model/db_stats.h"

namespace sp {

std::string sanitize_desc(std::string_view raw) {
  constexpr std::size_t kMax = 63;  // SP_PY_DESC_MAX - 1: what the probe copies
  std::string out(raw.substr(0, kMax));
  for (char& c : out) {
    if (c < 0x21 || c > 0x7e) c = '_';
  }
  return out;
}

}  // namespace sp
