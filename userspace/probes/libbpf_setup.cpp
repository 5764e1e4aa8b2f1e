#include "probes/libbpf_setup.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <string>
#include <sys/resource.h>

#include "core/util/log.h"

namespace sp::bpf {
namespace {

bool g_verbose = false;

int print_to_log(enum libbpf_print_level lvl, const char* format, va_list args) {
  if (lvl == LIBBPF_DEBUG && !g_verbose) return 0;
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(buf, sizeof buf, format, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string line = "libbpf: ";
  line += buf;
  switch (lvl) {
    case LIBBPF_WARN: log::write(log::Level::Warn, line); break;
    case LIBBPF_INFO: log::write(g_verbose ? log::Level::Info : log::Level::Debug, line); break;
    case LIBBPF_DEBUG: log::write(log::Level::Debug, line); break;
  }
  return n;
}

}  // namespace

void init_libbpf(bool verbose) {
  g_verbose = verbose;
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  libbpf_set_print(print_to_log);
  // Kernels that charge BPF memory to the memory cgroup ignore RLIMIT_MEMLOCK; older ones need it raised. Raising is
  // refused without CAP_SYS_RESOURCE: that is not an error by itself, loading will tell if memory really is short.
  rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  if (setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0) log::debug("raising RLIMIT_MEMLOCK refused; relying on memcg accounting");
}

}  // namespace sp::bpf
