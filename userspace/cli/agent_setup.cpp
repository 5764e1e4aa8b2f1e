#include "cli/agent_setup.h"

#include "cli/commands.h"
#include "cli/family_registry.h"
#include "core/proc/capabilities.h"
#include "core/proc/pid_namespace.h"
#include "core/util/log.h"
#include "exporter/server.h"
#include "probes/features.h"
#include "probes/libbpf_setup.h"

namespace sp::cli {
namespace {

agent::LoopOptions loop_options(const CliOptions& o) {
  agent::LoopOptions l;
  l.proc_root = o.proc_root;
  l.rescan_interval = o.rescan_interval;
  l.scrape.interval = std::chrono::duration_cast<std::chrono::milliseconds>(o.scrape_interval);
  l.scrape.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(o.scrape_timeout);
  l.hub.correlation.window_ns = static_cast<std::uint64_t>(o.window.count());
  // A scrape's result is added at most its timeout (plus a drain) after it started.
  l.hub.correlation.history_ns = static_cast<std::uint64_t>((o.scrape_timeout + std::chrono::seconds(5)).count());
  l.hub.forget_after_ns =
      o.forget_after ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(o.forget_after->count())) : std::nullopt;
  return l;
}

// Whether BPF can load at all; false after one line with the remedy (instead of one failure per family).
bool bpf_preflight(const CliOptions& o) {
  if (auto caps = own_effective_caps(); caps && !has_cap(*caps, Cap::SysAdmin) && !has_cap(*caps, Cap::Bpf)) {
    log::error("cannot load BPF programs: this process has neither CAP_SYS_ADMIN nor CAP_BPF; run as root, or "
               "grant CAP_SYS_ADMIN and CAP_SYS_PTRACE (`synapse-profiler doctor` says what is missing)");
    return false;
  }
  bpf::init_libbpf(o.verbose);
  // Without the kernel's BTF no CO-RE object loads.
  if (const std::string why = bpf::kernel_btf_problem(); !why.empty()) {
    log::error("{}; the kernel must be built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are): boot "
               "such a kernel (`synapse-profiler doctor` checks it)",
               why);
    return false;
  }
  // BPF reports ids of the agent's own PID namespace; PIDs read under another namespace's /proc would never match.
  if (auto mismatch = proc_root_pid_ns_mismatch(o.proc_root); !mismatch.empty()) log::warn("{}", mismatch);
  return true;
}

}  // namespace

sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

void drop_capabilities(const CliOptions& o) {
  std::uint64_t keep =
      cap_mask({Cap::SysAdmin, Cap::SysPtrace, Cap::Bpf, Cap::Perfmon, Cap::DacReadSearch, Cap::SysResource});
  // A privileged port needs CAP_NET_BIND_SERVICE until it is bound (a bad --listen fails later, at the bind).
  if (o.command == Command::Run) {
    try {
      if (const int port = exporter::listen_port(o.listen); port > 0 && port < 1024) {
        keep |= cap_mask({Cap::NetBindService});
      }
    } catch (const exporter::ListenError&) {
    }
  }
  std::string error;
  if (auto kept = restrict_capabilities(keep, error)) {
    log::info("capabilities kept: {}; every other one dropped", cap_names(*kept));
  } else {
    log::warn("could not drop unneeded capabilities: {}", error);
  }
}

std::unique_ptr<agent::ProfilingLoop> start_profiling(const CliOptions& o, bool keep_fingerprints) {
  if (!bpf_preflight(o)) return nullptr;
  const DiscoveryOptions discovery = discovery_options(o);
  // The loop's scans run on its one thread: the memo needs no lock.
  auto memo = std::make_shared<ScanMemo>();
  auto loop = std::make_unique<agent::ProfilingLoop>(
      loop_options(o), [discovery, memo] { return scan(discovery, *memo); }, make_probe_families(o, keep_fingerprints));
  std::string first_error;
  if (!loop->start_families(first_error)) {
    log::error("no probe family could be loaded ({}): run as root, or with CAP_SYS_ADMIN and CAP_SYS_PTRACE; "
               "`synapse-profiler doctor` says what is missing",
               first_error);
    return nullptr;
  }
  return loop;
}

}  // namespace sp::cli
