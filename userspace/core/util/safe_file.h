// File access for discovery: capped reads of /proc files, and opening files that a target names (its config paths)
// strictly inside that target's root. A container can plant `/etc/synapse/x.yaml -> /etc/shadow`; opened naively
// through /proc/PID/root that absolute symlink would resolve against the agent's own root. open_in_root() uses
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) so absolute symlinks and ".." stay inside the given root.
//
// Errors are reported as errno values (0 = success) so callers can tell "the process is gone" (ENOENT/ESRCH) from
// other failures without exceptions.
#pragma once

#include "core/util/fd.h"

#include <cstddef>
#include <string>
#include <vector>

namespace sp {

struct ReadResult {
  int error = 0;         // errno of the failing call, 0 on success
  bool too_big = false;  // the file holds more than the cap; data then holds the first max_bytes bytes
  std::string data;
};

// Reads fd to EOF, at most max_bytes. Never trusts st_size (procfs reports 0).
ReadResult read_fd(int fd, std::size_t max_bytes);

// open(path, flags | O_CLOEXEC). Sets `error` (errno) and returns an invalid Fd on failure.
Fd open_file(const std::string& path, int flags, int& error);

// Opens a plain path read-only and reads it (for files below proc_root, which we trust to be procfs or a fixture).
ReadResult read_file(const std::string& path, std::size_t max_bytes);

// readlink(2) into `target`; returns errno or 0.
int read_link(const std::string& path, std::string& target);

// Opens `path` read-only relative to `root_fd`, resolved as if root_fd were "/" (absolute symlinks and ".." cannot
// leave it) and refusing /proc magic links. O_NONBLOCK so that a FIFO planted as a config file cannot hang us.
// ENOSYS on kernels without openat2 (< 5.6): there is deliberately no unsafe fallback.
Fd open_in_root(int root_fd, const std::string& path, int& error);

// Names in the directory open at `dir_fd` (not "." and ".."), unsorted. `dir_fd` stays owned by the caller.
std::vector<std::string> list_dir(int dir_fd, int& error);

// The message for an errno value, or for a negative one as libbpf returns them (-ENOENT reads as ENOENT).
std::string errno_text(int error);

}  // namespace sp
