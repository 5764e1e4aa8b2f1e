#include "probes/pid_namespace_config.h"

#include "core/util/log.h"

namespace sp::bpf {

const PidNsFilter& agent_pid_ns() {
  static const PidNsFilter filter = [] {
    std::string error;
    auto f = own_pid_ns_filter(error);
    if (!f) {
      log::warn("{}: taking the initial PID namespace (in a container, PIDs from BPF will not match /proc)", error);
      return PidNsFilter{};
    }
    if (!f->initial()) log::debug("agent's PID namespace: dev {:#x} inode {}, BPF reports its ids", f->dev, f->ino);
    return *f;
  }();
  return filter;
}

}  // namespace sp::bpf
