#include "core/model/io_stats.h"

#include <fmt/core.h>
#include <fnmatch.h>

#include "blockio.h"
#include "core/util/safe_file.h"

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

std::string block_device_name(const std::string& sys_root, std::uint32_t dev) {
  const unsigned major = dev >> 20, minor = dev & ((1U << 20) - 1);
  ReadResult r = read_file(fmt::format("{}/dev/block/{}:{}/uevent", sys_root, major, minor), 64 * 1024);
  if (r.error == 0) {
    auto pos = r.data.find("DEVNAME=");
    if (pos != std::string::npos) {
      auto end = r.data.find('\n', pos);
      std::string name = r.data.substr(pos + 8, end == std::string::npos ? std::string::npos : end - pos - 8);
      if (!name.empty()) return name;
    }
  }
  return fmt::format("{}:{}", major, minor);
}

}  // namespace sp
