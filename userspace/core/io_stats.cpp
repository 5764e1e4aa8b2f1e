#include "core/io_stats.h"

#include <fnmatch.h>

#include "blockio.h"

namespace sp {

std::string io_op_name(std::uint32_t op) {
  switch (op) {
    case SP_IO_READ: return "read";
    case SP_IO_WRITE: return "write";
    case SP_IO_WRITE_SYNC: return "write_sync";
    case SP_IO_FLUSH: return "flush";
    case SP_IO_DISCARD: return "discard";
    default: return "other";
  }
}

}  // namespace sp

namespace sp {

bool device_selected(const std::vector<std::string>& globs, const std::string& device) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (fnmatch(g.c_str(), device.c_str(), 0) == 0) return true;
  }
  return false;
}

}  // namespace sp
