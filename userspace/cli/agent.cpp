// `run`: the long-running agent. The profiling loop (agent/profiling_loop.h) scans, attaches and polls on its own
// thread; the exporter builds the exposition from its state on every scrape; the main thread only waits for
// SIGINT/SIGTERM and then tears everything down in order (RAII releases every BPF link, so nothing of ours stays
// attached).
#include <fmt/core.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>

#include "agent/exposition.h"
#include "cli/agent_setup.h"
#include "cli/commands.h"
#include "core/proc/proc_parse.h"
#include "core/util/log.h"
#include "exporter/server.h"

namespace sp::cli {
namespace {

// How long start-up took, for operators and for scripts/bench_agent.sh: from the process's start (exec, as the
// kernel records it) to the end of the first scan, which has loaded every family and attached to every Synapse
// process running then.
void log_first_attach_pass(const agent::ProfilingLoop& loop) {
  std::string since_start = "?";
  timespec boot{};
  const long ticks = sysconf(_SC_CLK_TCK);
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (auto st = proc::parse_stat(text); st && ticks > 0 && clock_gettime(CLOCK_BOOTTIME, &boot) == 0) {
    const double now_s = static_cast<double>(boot.tv_sec) + static_cast<double>(boot.tv_nsec) / 1e9;
    // start_time has the resolution of a clock tick (10 ms at USER_HZ 100).
    since_start = fmt::format("{:.3f}", now_s - static_cast<double>(st->start_time) / static_cast<double>(ticks));
  }
  std::string attached;
  for (const auto& f : loop.families()) {
    std::map<std::string, std::size_t> per_probe;  // a family may report more than one probe (libpq, libpq_desc)
    for (const auto& st : f->attach_status()) per_probe[st.probe] += st.attached ? 1 : 0;
    for (const auto& [probe, n] : per_probe) attached += fmt::format(", {} attached to {}", probe, n);
  }
  log::info("first attach pass done {} s after process start: {} Synapse processes{}", since_start,
            loop.workers().size(), attached);
}

exporter::PassthroughFilter passthrough_filter(const CliOptions& o) {
  exporter::PassthroughFilter f;
  if (!o.metrics_include.empty()) f.include = std::regex(o.metrics_include);
  if (!o.metrics_exclude.empty()) f.exclude = std::regex(o.metrics_exclude);
  return f;
}

}  // namespace

void serve_and_start(exporter::MetricsServer& server, agent::ProfilingLoop& loop, const CliOptions& options) {
  auto exposition = std::make_shared<agent::Exposition>(loop, passthrough_filter(options), SP_VERSION);
  server.add(std::make_shared<exporter::FunctionCollectable>([exposition] { return exposition->collect(); }));
  loop.first_scan();  // attaches to what is running before we report being ready
  log_first_attach_pass(loop);
  server.set_ready();
  loop.start();
}

int run_agent(const CliOptions& options) {
  sigset_t stop_signals = block_stop_signals();
  drop_capabilities(options);

  // The port first: a port in use is a one-line error before anything is loaded into the kernel. From here on
  // /healthz answers (liveness: a probe that timed out during a long start-up would restart the agent in a loop),
  // /readyz says 503 until the first scan has attached, and /metrics serves what there is.
  std::unique_ptr<exporter::MetricsServer> server;
  try {
    server = std::make_unique<exporter::MetricsServer>(options.listen);
  } catch (const exporter::ListenError& e) {
    log::error("{}", e.what());
    return 1;
  }
  log::info("synapse-profiler {} serving http://{}/metrics (port {}), /healthz and /readyz", SP_VERSION, options.listen,
            server->port());

  // No recording: server-side statements feed the series, which need the verb only.
  auto loop = start_profiling(options, /*keep_fingerprints=*/false);
  if (!loop) return 1;

  serve_and_start(*server, *loop, options);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info("received {}, detaching", sig == SIGINT ? "SIGINT" : "SIGTERM");
  loop->stop();
  server.reset();  // no scrape may read the loop any more
  loop.reset();
  log::info("stopped");
  return 0;
}

DiscoveryOptions discovery_options(const CliOptions& o) {
  DiscoveryOptions d;
  d.proc_root = o.proc_root;
  d.pod_log_dirs = o.pod_log_dirs;
  d.pids = o.pids;
  d.worker_name = o.worker_name;
  d.metrics_urls = o.metrics_urls;
  return d;
}

}  // namespace sp::cli
