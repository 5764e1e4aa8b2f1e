#include "core/proc/pid_namespace.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/core.h>

namespace sp {

PidNsFilter pid_ns_filter(std::uint64_t st_dev, std::uint64_t st_ino) {
  if (st_ino == kInitPidNsIno) return {};
  const auto dev = static_cast<dev_t>(st_dev);
  // The kernel's dev_t (MKDEV): 12 bits of major above 20 bits of minor; stat() reports the "new" userspace encoding.
  const std::uint64_t kernel_dev = (static_cast<std::uint64_t>(major(dev)) << 20) | minor(dev);
  return {kernel_dev, st_ino};
}

std::optional<PidNsFilter> own_pid_ns_filter(std::string& error) {
  struct stat st {};
  if (stat("/proc/self/ns/pid", &st) != 0) {
    error = fmt::format("stat /proc/self/ns/pid: {}", std::strerror(errno));
    return std::nullopt;
  }
  return pid_ns_filter(st.st_dev, st.st_ino);
}

std::string proc_root_pid_ns_mismatch(const std::string& proc_root) {
  std::array<char, 32> buf{};
  const std::string link = proc_root + "/self";
  ssize_t n = readlink(link.c_str(), buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  int pid = 0;
  auto [end, ec] = std::from_chars(buf.data(), buf.data() + n, pid);
  const int own = static_cast<int>(getpid());
  if (ec == std::errc() && end == buf.data() + n && pid == own) return {};
  return fmt::format("{} shows this process as PID '{}' but it is PID {} in its own PID namespace: that /proc belongs "
                     "to another PID namespace (mount a procfs of the agent's own namespace, e.g. a container's "
                     "default /proc)",
                     link, std::string(buf.data(), static_cast<std::size_t>(n)), own);
}

}  // namespace sp
