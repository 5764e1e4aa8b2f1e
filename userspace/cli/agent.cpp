// `run`: the long-running agent. Discovery rescans on its own thread; the exporter builds families from the latest
// snapshot on every scrape; the main thread only waits for SIGINT/SIGTERM and then tears everything down in order
// (RAII releases every BPF link, so nothing of ours stays attached).
#include <fmt/core.h>
#include <signal.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "bpf/blockio_family.h"
#include "bpf/gc_family.h"
#include "bpf/libbpf_setup.h"
#include "bpf/libpq_family.h"
#include "bpf/pgserver_family.h"
#include "cli/commands.h"
#include "core/log.h"
#include "core/overlap.h"
#include "core/scraper.h"
#include "exporter/families.h"
#include "exporter/passthrough.h"
#include "exporter/probe_metrics.h"
#include "exporter/self_metrics.h"
#include "exporter/server.h"

namespace sp::cli {
namespace {

ScrapeOptions scrape_options(const CliOptions& o) {
  ScrapeOptions s;
  s.interval = std::chrono::duration_cast<std::chrono::milliseconds>(o.scrape_interval);
  s.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(o.scrape_timeout);
  return s;
}

bpf::LibpqAsyncMode async_mode(const CliOptions& o) {
  if (o.libpq_async == "on") return bpf::LibpqAsyncMode::On;
  if (o.libpq_async == "off") return bpf::LibpqAsyncMode::Off;
  return bpf::LibpqAsyncMode::Auto;
}

class Agent {
 public:
  explicit Agent(const CliOptions& o)
      : options_(o), discovery_(discovery_options(o)), gc_(o.proc_root),
        libpq_(o.proc_root, async_mode(o)),
        pgserver_(o.proc_root),
        blockio_("/sys", o.devices, &pgserver_),
        scraper_(scrape_options(o)) {
    if (!o.metrics_include.empty()) passthrough_.include = std::regex(o.metrics_include);
    if (!o.metrics_exclude.empty()) passthrough_.exclude = std::regex(o.metrics_exclude);
    // The per-event streams meet here. Both sinks run on the scanning thread (inside poll()), like rescan().
    gc_.set_event_sink([this](const gc_event& e) {
      auto it = worker_of_.find(static_cast<int>(e.tgid));
      if (it == worker_of_.end()) return;
      add_overlap(it->second, overlap_.add_pause(e.tgid, e.start_ns, e.end_ns));
    });
    libpq_.set_event_sink([this](const QueryEvent& q) {
      add_overlap(q.worker, overlap_.add_query(q.tgid, q.start_ns, q.end_ns));
    });
  }

  int run() {
    // Block the stop signals before any thread starts, so that every thread inherits the mask and only sigwait()
    // below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    // The port first: a port in use is a one-line error before anything is loaded into the kernel.
    std::unique_ptr<exporter::MetricsServer> server;
    try {
      server = std::make_unique<exporter::MetricsServer>(options_.listen);
    } catch (const exporter::ListenError& e) {
      log::error("{}", e.what());
      return 1;
    }

    bpf::init_libbpf(options_.verbose);
    // A family that cannot load is reported and the others keep working.
    if (std::string error; !gc_.start(error)) log::error("gc probes unavailable: {}", error);
    if (std::string error; !libpq_.start(error)) log::error("libpq probes unavailable: {}", error);
    if (std::string error; !pgserver_.start(error)) log::error("postgres probes unavailable: {}", error);
    if (std::string error; !blockio_.start(error)) log::error("block I/O probes unavailable: {}", error);

    server->add(std::make_shared<exporter::FunctionCollectable>([this] { return collect(); }));
    log::info("synapse-profiler {} serving http://{}/metrics (port {}) and /healthz", SP_VERSION, options_.listen,
              server->port());

    rescan();  // the first scan attaches to what is running before we report being up
    server->serve_health();
    scraper_.start();
    std::thread scanner([this] { scan_loop(); });

    int sig = 0;
    sigwait(&stop_signals, &sig);
    log::info("received {}, detaching", sig == SIGINT ? "SIGINT" : "SIGTERM");
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    scanner.join();
    scraper_.stop();
    server.reset();
    log::info("stopped");
    return 0;
  }

 private:
  // Probe data is polled every 250 ms (ring buffers are drained on a timer: the BPF side never wakes us per event);
  // discovery runs every --rescan-interval.
  void scan_loop() {
    using Clock = std::chrono::steady_clock;
    constexpr auto kPollInterval = std::chrono::milliseconds(250);
    auto next_scan = Clock::now() + options_.rescan_interval;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      auto wake_at = std::min(next_scan, Clock::now() + kPollInterval);
      wake_.wait_until(lock, wake_at, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      if (Clock::now() >= next_scan) {
        rescan();
        next_scan = Clock::now() + options_.rescan_interval;
      }
      gc_.poll();
      libpq_.poll();
      pgserver_.poll();
      blockio_.poll();
      lock.lock();
    }
  }

  void rescan() {
    ScanResult result = scan(discovery_);
    auto diff = state_.update(result);
    for (const auto& w : diff.new_warnings) log::warn("{}", w);  // each problem once, not on every rescan
    for (const auto& w : diff.added) {
      log::info("found Synapse process pid {} worker {} ({}){}", w.host_pid, w.worker_name, w.worker_app,
                w.metrics_url ? " metrics " + *w.metrics_url : std::string(" without a metrics URL"));
    }
    for (const auto& w : diff.removed) log::info("Synapse process pid {} worker {} is gone", w.host_pid, w.worker_name);
    // Families drain their last events for a removed process during update(): forget it only after them.
    gc_.update(diff);
    libpq_.update(result, diff);
    pgserver_.update(result);
    blockio_.update(result);
    std::vector<ScrapeTarget> targets;
    for (const auto& w : result.workers) {
      if (w.metrics_url) targets.push_back({w.worker_name, w.worker_app, *w.metrics_url});
    }
    scraper_.set_targets(std::move(targets));
    for (const auto& w : diff.removed) {
      worker_of_.erase(w.host_pid);
      overlap_.forget(static_cast<std::uint32_t>(w.host_pid));
    }
    for (const auto& w : result.workers) worker_of_[w.host_pid] = {w.worker_name, w.worker_app};
    std::lock_guard lock(mutex_);
    latest_ = std::move(result);
  }

  void add_overlap(const WorkerLabels& worker, std::uint64_t ns) {
    if (ns == 0) return;
    std::lock_guard lock(mutex_);
    overlap_ns_[worker] += ns;
  }

  std::vector<prometheus::MetricFamily> collect() {
    exporter::SelfSnapshot snap;
    snap.version = SP_VERSION;
    {
      std::lock_guard lock(mutex_);
      snap.workers = latest_.workers;
    }
    auto families = exporter::self_families(snap);
    GcSnapshot gc = gc_.snapshot();
    DbClientSnapshot db = libpq_.snapshot();
    for (auto& f : exporter::gc_families(gc)) families.push_back(std::move(f));
    for (auto& f : exporter::db_client_families(db, options_.db_table_labels)) families.push_back(std::move(f));
    DbServerSnapshot server = pgserver_.snapshot();
    for (auto& f : exporter::db_server_families(server)) families.push_back(std::move(f));
    IoSnapshot io = blockio_.snapshot();
    for (auto& f : exporter::disk_io_families(io)) families.push_back(std::move(f));
    std::vector<ProbeStatus> status = gc.status;
    status.insert(status.end(), db.status.begin(), db.status.end());
    families.push_back(exporter::probe_attached_family(status));
    {
      std::vector<prometheus::ClientMetric> points;
      std::lock_guard lock(mutex_);
      for (const auto& [w, ns] : overlap_ns_) {
        points.push_back(exporter::counter_point({{"worker", w.worker}, {"worker_app", w.worker_app}},
                                                 static_cast<double>(ns) / 1e9));
      }
      families.push_back(exporter::counter_family(
          "synapse_profiler_db_query_gc_overlap_seconds_total",
          "Client-side (libpq) query time that overlapped a GC pause of the same worker process.", std::move(points)));
    }
    auto scraped = scraper_.latest();
    for (auto& f : exporter::scrape_status_families(scraped)) families.push_back(std::move(f));
    for (auto& f : exporter::passthrough_families(scraped, passthrough_)) families.push_back(std::move(f));
    families.push_back(exporter::events_lost_family(
        {{"gc", gc.events_lost}, {"libpq", db.events_lost}, {"postgres", server.events_lost}, {"block_io", io.events_lost}}));
    return families;
  }

  const CliOptions& options_;
  const DiscoveryOptions discovery_;
  DiscoveryState state_;  // touched by the scanning thread only (and by run() before it starts)
  bpf::GcFamily gc_;
  bpf::LibpqFamily libpq_;
  bpf::PgServerFamily pgserver_;
  bpf::BlockIoFamily blockio_;
  Scraper scraper_;
  OverlapTracker overlap_;                   // scanning thread only
  std::map<int, WorkerLabels> worker_of_;    // host PID -> labels, scanning thread only
  std::map<WorkerLabels, std::uint64_t> overlap_ns_;  // guarded by mutex_
  exporter::PassthroughFilter passthrough_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  ScanResult latest_;
};

}  // namespace

DiscoveryOptions discovery_options(const CliOptions& o) {
  DiscoveryOptions d;
  d.proc_root = o.proc_root;
  d.pids = o.pids;
  d.worker_name = o.worker_name;
  d.metrics_urls = o.metrics_urls;
  return d;
}

int run_agent(const CliOptions& options) { return Agent(options).run(); }

}  // namespace sp::cli
