#include "core/util/safe_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace sp {

ReadResult read_fd(int fd, std::size_t max_bytes) {
  ReadResult result;
  char buffer[16384];
  for (;;) {
    // Read one byte past the cap so "exactly max_bytes" and "more" can be told apart.
    std::size_t want = sizeof buffer;
    const std::size_t room = max_bytes + 1 - result.data.size();
    if (room < want) want = room;
    const ssize_t n = ::read(fd, buffer, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      result.error = errno;
      return result;
    }
    if (n == 0) return result;
    result.data.append(buffer, static_cast<std::size_t>(n));
    if (result.data.size() > max_bytes) {
      result.data.resize(max_bytes);
      result.too_big = true;
      return result;
    }
  }
}

Fd open_file(const std::string& path, int flags, int& error) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  error = fd < 0 ? errno : 0;
  return Fd(fd);
}

ReadResult read_file(const std::string& path, std::size_t max_bytes) {
  int error = 0;
  const Fd fd = open_file(path, O_RDONLY | O_NONBLOCK | O_NOCTTY, error);
  if (!fd.valid()) {
    ReadResult result;
    result.error = error;
    return result;
  }
  return read_fd(fd.get(), max_bytes);
}

int read_link(const std::string& path, std::string& target) {
  // Link targets in /proc are bounded by PATH_MAX; grow once more in case a fixture is longer.
  std::string buffer(4096, '\0');
  for (int attempt = 0; attempt < 4; ++attempt) {
    const ssize_t n = ::readlink(path.c_str(), buffer.data(), buffer.size());
    if (n < 0) return errno;
    if (static_cast<std::size_t>(n) < buffer.size()) {
      buffer.resize(static_cast<std::size_t>(n));
      target = std::move(buffer);
      return 0;
    }
    buffer.resize(buffer.size() * 2);
  }
  return ENAMETOOLONG;
}

Fd open_in_root(int root_fd, const std::string& path, int& error) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = -1;
  do {
    fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));  // EAGAIN: a concurrent rename raced the lookup
  error = fd < 0 ? errno : 0;
  return Fd(static_cast<int>(fd));
}

std::vector<std::string> list_dir(int dir_fd, int& error) {
  std::vector<std::string> names;
  // fdopendir takes ownership of its fd, so hand it a duplicate and keep the caller's.
  const int copy = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    error = errno;
    return names;
  }
  DIR* dir = ::fdopendir(copy);
  if (dir == nullptr) {
    error = errno;
    ::close(copy);
    return names;
  }
  ::rewinddir(dir);  // the duplicate shares the file offset with dir_fd
  error = 0;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      error = errno;
      break;
    }
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  return names;
}

std::string errno_text(int error) { return std::generic_category().message(error < 0 ? -error : error); }

}  // namespace sp
