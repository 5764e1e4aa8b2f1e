#include "probes/tracepoint_ids.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "core/util/fd.h"
#include "core/util/safe_file.h"

namespace sp::bpf {
namespace {

constexpr const char* kHostRoots[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
constexpr const char* kMountPoint = "/sys/kernel/tracing";

// "123\n" -> 123; -1 for anything else.
int parse_id(const std::string& text) {
  int id = 0;
  bool digits = false;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      if (id > 100'000'000) return -1;
      id = id * 10 + (c - '0');
      digits = true;
    } else if (c == '\n') {
      break;
    } else {
      return -1;
    }
  }
  return digits ? id : -1;
}

std::vector<int> read_ids(const std::string& root, const std::vector<std::string>& events) {
  std::vector<int> ids;
  for (const auto& e : events) {
    const ReadResult r = read_file(root + "/events/" + e + "/id", 64);
    ids.push_back(r.error == 0 ? parse_id(r.data) : -1);
  }
  return ids;
}

// Async-signal-safe pieces for the child of fork() in a multi-threaded process: no allocation, no locks.
void put(int fd, const char* s) {
  std::size_t n = 0;
  while (s[n]) ++n;
  while (n > 0) {
    const ssize_t w = write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

void put_int(int fd, int v) {
  char buf[16];
  int i = sizeof buf - 1;
  buf[i] = '\0';
  if (v == 0) buf[--i] = '0';
  while (v > 0 && i > 0) {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  put(fd, buf + i);
}

// The child: private mount namespace, tracefs mounted there, each id file's content written as one line ("-" for a
// missing event). On failure one line "!STEP ERRNO" and exit 1.
[[noreturn]] void child_read_ids(int out, const std::vector<const char*>& paths) {
  auto fail = [out](const char* step) {
    const int err = errno;
    put(out, "!");
    put(out, step);
    put(out, " ");
    put_int(out, err);
    put(out, "\n");
    _exit(1);
  };
  if (unshare(CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNS)");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("make / private");
  if (mount("tracefs", kMountPoint, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    fail("mount tracefs");
  }
  for (const char* path : paths) {
    char buf[32];
    ssize_t n = -1;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      n = read(fd, buf, sizeof buf - 1);
      close(fd);
    }
    if (n > 0) {
      buf[n] = '\0';
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == '\n') buf[i] = '\0';
      }
      put(out, buf);
      put(out, "\n");
    } else {
      put(out, "-\n");
    }
  }
  _exit(0);
}

}  // namespace

std::optional<std::vector<int>> tracepoint_ids_from_private_mount(const std::vector<std::string>& events,
                                                                  std::string& error) {
  // Everything the child needs, built before the fork.
  std::vector<std::string> owned;
  for (const auto& e : events) owned.push_back(fmt::format("{}/events/{}/id", kMountPoint, e));
  std::vector<const char*> paths;
  for (const auto& p : owned) paths.push_back(p.c_str());

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    error = "pipe: " + errno_text(errno);
    return std::nullopt;
  }
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) {
    error = "fork: " + errno_text(errno);
    return std::nullopt;
  }
  if (pid == 0) child_read_ids(write_end.get(), paths);
  write_end.reset();
  std::string text;
  char buf[256];
  for (;;) {
    const ssize_t n = read(read_end.get(), buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<std::size_t>(n));
      if (text.size() > 64 * events.size() + 256) break;  // never from our child; stop reading
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!text.empty() && text[0] == '!') {
    const auto space = text.rfind(' ');
    const int err = space == std::string::npos ? 0 : parse_id(text.substr(space + 1));
    error = fmt::format("a private tracefs mount: {}: {}", text.substr(1, space == std::string::npos ? 0 : space - 1),
                        err > 0 ? errno_text(err) : "failed");
    return std::nullopt;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = "a private tracefs mount: the helper process failed";
    return std::nullopt;
  }
  std::vector<int> ids;
  std::size_t at = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto end = text.find('\n', at);
    if (end == std::string::npos) {
      error = "a private tracefs mount: short answer from the helper process";
      return std::nullopt;
    }
    ids.push_back(parse_id(text.substr(at, end - at)));
    at = end + 1;
  }
  return ids;
}

std::optional<std::vector<int>> tracepoint_ids(const std::vector<std::string>& events, std::string& source,
                                               std::string& error) {
  for (const char* root : kHostRoots) {
    if (access((std::string(root) + "/events").c_str(), R_OK | X_OK) != 0) continue;
    source = root;
    return read_ids(root, events);
  }
  auto ids = tracepoint_ids_from_private_mount(events, error);
  if (ids) source = "a private tracefs mount";
  return ids;
}

Link attach_tracepoint_id(bpf_program* prog, int id, std::string& error) {
  perf_event_attr attr{};
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.size = sizeof attr;
  attr.config = static_cast<__u64>(id);
  attr.sample_period = 1;
  attr.wakeup_events = 1;
  const int pfd = static_cast<int>(syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC));
  if (pfd < 0) {
    error = fmt::format("perf_event_open(tracepoint {}): {}", id, errno_text(errno));
    return Link();
  }
  Link link(bpf_program__attach_perf_event(prog, pfd));  // the link owns pfd from here on
  if (!link) {
    error = fmt::format("attach {} to tracepoint {}: {}", bpf_program__name(prog), id, errno_text(errno));
    close(pfd);
  }
  return link;
}

}  // namespace sp::bpf
