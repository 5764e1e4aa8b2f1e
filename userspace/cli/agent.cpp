// `run`: the long-running agent. Discovery rescans on its own thread; the exporter builds families from the latest
// snapshot on every scrape; the main thread only waits for SIGINT/SIGTERM and then tears everything down in order
// (RAII releases every BPF link, so nothing of ours stays attached).
#include <fmt/core.h>
#include <malloc.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "probes/blockio_family.h"
#include "probes/features.h"
#include "probes/gc_family.h"
#include "probes/libbpf_setup.h"
#include "probes/libpq_family.h"
#include "probes/nvme_family.h"
#include "probes/pgserver_family.h"
#include "cli/commands.h"
#include "core/proc/capabilities.h"
#include "core/correlate/correlator.h"
#include "core/correlate/desc_matcher.h"
#include "core/correlate/desc_ratio.h"
#include "core/util/duration.h"
#include "core/util/log.h"
#include "core/proc/netns.h"
#include "core/correlate/overlap.h"
#include "core/proc/pid_namespace.h"
#include "core/proc/proc_parse.h"
#include "core/record/recording.h"
#include "core/record/report_html.h"
#include "core/record/summary.h"
#include "core/record/trace_json.h"
#include "core/util/ring_waker.h"
#include "core/scrape/scraper.h"
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

CorrelationOptions correlation_options(const CliOptions& o) {
  CorrelationOptions c;
  c.window_ns = static_cast<std::uint64_t>(o.window.count());
  // A scrape's result is added at most its timeout (plus a drain) after it started.
  c.history_ns = static_cast<std::uint64_t>((o.scrape_timeout + std::chrono::seconds(5)).count());
  return c;
}

std::uint64_t monotonic_ns(std::chrono::steady_clock::time_point t) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
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
        nvme_("/sys", o.devices),
        scraper_(scrape_options(o)), correlator_(correlation_options(o)),
        desc_ratio_(correlation_options(o).window_ns, correlation_options(o).history_ns) {
    if (!o.metrics_include.empty()) passthrough_.include = std::regex(o.metrics_include);
    if (!o.metrics_exclude.empty()) passthrough_.exclude = std::regex(o.metrics_exclude);
    // The per-event streams meet here. Every sink runs on the scanning thread (inside poll()), like rescan(); they
    // only queue, and poll_all() hands each queue to the correlator, the desc ratio and the desc matcher under one
    // lock.
    gc_.set_event_sink([this](const gc_event& e) {
      auto it = worker_of_.find(static_cast<int>(e.tgid));
      if (it == worker_of_.end()) return;
      add_overlap(it->second, overlap_.add_pause(e.tgid, e.start_ns, e.end_ns));
      busy_batch_.push_back({Cause::Gc, it->second, e.start_ns, e.end_ns});
      if (recording(it->second)) {
        RecordedGc g;
        g.worker = it->second;
        g.tgid = e.tgid;
        g.tid = e.tid;
        g.start_ns = e.start_ns;
        g.end_ns = e.end_ns;
        g.generation = e.generation;
        g.collected = e.collected;
        count(recording_->add_gc(g), recorded_gc_);
      }
    });
    libpq_.set_event_sink([this](const QueryEvent& q) {
      add_overlap(q.worker, overlap_.add_query(q.tgid, q.start_ns, q.end_ns));
      client_batch_.push_back(q);
      if (recording(q.worker)) count(recording_->add_query(q), recorded_queries_);
    });
    pgserver_.set_event_sink([this](const QueryEvent& q) {
      if (q.worker == kOtherWorker) return;
      server_batch_.push_back(q);
      if (recording(q.worker)) count(recording_->add_query(q), recorded_server_);
    });
    pgserver_.set_lock_sink(
        [this](const WorkerLabels& w, std::uint32_t backend, std::uint64_t start, std::uint64_t end) {
          RecordedLockWait l;
          l.worker = w;
          l.backend = backend;
          l.start_ns = start;
          l.end_ns = end;
          lock_batch_.push_back(l);
          if (recording(w)) count(recording_->add_lock_wait(l), recorded_server_);
        });
    blockio_.set_event_sink([this](const IoEvent& e) {
      busy_batch_.push_back({Cause::Disk, e.worker, e.start_ns, e.complete_ns});
      if (recording(e.worker)) count(recording_->add_io(e), recorded_io_);
    });
  }

  // `record`: the same discovery and probes as `run`, no HTTP server; every event of the selected workers goes into
  // a Recording for --duration (or until SIGINT/SIGTERM), then the trace, report and summary are written.
  int record() {
    namespace fs = std::filesystem;
    sigset_t stop_signals = block_stop_signals();
    drop_capabilities();
    std::error_code ec;
    fs::create_directories(options_.output_dir, ec);
    if (ec || !fs::is_directory(options_.output_dir)) {
      log::error("cannot create the output directory {}: {}", options_.output_dir, ec ? ec.message() : "not a directory");
      return 1;
    }
    for (const char* name : {"trace.json", "report.html", "summary.txt"}) {
      std::ofstream probe(fs::path(options_.output_dir) / name, std::ios::app);
      if (!probe) {
        log::error("cannot write {} in {}", name, options_.output_dir);
        return 1;
      }
    }
    record_workers_ = std::set<std::string>(options_.record_workers.begin(), options_.record_workers.end());

    if (!start_families()) return 1;
    Recording rec(options_.max_events);
    rec.start(monotonic_ns(std::chrono::steady_clock::now()), std::chrono::system_clock::now());
    recording_ = &rec;
    rescan();
    if (!record_workers_.empty()) {
      for (const auto& name : record_workers_) {
        bool found = false;
        for (const auto& [pid, labels] : worker_of_) found |= labels.worker == name;
        if (!found) log::warn("record: no worker named {} is running (yet); it is recorded if it appears", name);
      }
    }
    scraper_.start();
    std::thread scanner([this] { scan_loop(); });

    const bool tty = isatty(STDERR_FILENO) == 1;
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + options_.record_duration;
    const double total_s = std::chrono::duration<double>(options_.record_duration).count();
    std::string ended_by = "the duration";
    log::info("recording for {:.0f} s into {} (Ctrl-C ends early and still writes everything)", total_s,
              options_.output_dir);
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      const auto left = std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::seconds(1));
      timespec ts{static_cast<time_t>(left.count() / 1'000'000'000), static_cast<long>(left.count() % 1'000'000'000)};
      int sig = sigtimedwait(&stop_signals, nullptr, &ts);
      if (sig == SIGINT || sig == SIGTERM) {
        ended_by = sig == SIGINT ? "SIGINT" : "SIGTERM";
        break;
      }
      if (tty) {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        fmt::print(stderr, "\r[{:5.0f} s / {:.0f} s] gc {}  queries {}  server {}  disk {}  dropped {}   ", elapsed,
                   total_s, recorded_gc_.load(), recorded_queries_.load(), recorded_server_.load(),
                   recorded_io_.load(), recorded_dropped_.load());
      }
    }
    if (tty) fmt::print(stderr, "\n");
    rec.finish(monotonic_ns(std::chrono::steady_clock::now()));
    stopping_ = true;
    waker_.interrupt();
    scanner.join();
    poll_all();  // what ended before the finish and is still in the ring buffers
    scraper_.stop();
    recording_ = nullptr;

    log::info("recording ended by {}: {} events ({} dropped at the cap of {}); writing {}", ended_by, rec.events(),
              rec.dropped(), rec.max_events(), options_.output_dir);
    const RecordingSummary summary = summarize(rec);
    bool ok = true;
    auto write = [&](const char* name, const std::function<void(std::ostream&)>& body) {
      const fs::path path = fs::path(options_.output_dir) / name;
      std::ofstream out(path, std::ios::trunc);
      body(out);
      out.close();
      if (!out) {
        log::error("writing {} failed", path.string());
        ok = false;
      }
    };
    write("trace.json", [&](std::ostream& o) { write_trace_json(rec, o); });
    write("report.html", [&](std::ostream& o) { o << render_report_html(summary); });
    const std::string text = render_summary_text(summary);
    write("summary.txt", [&](std::ostream& o) { o << text; });
    fmt::print("{}\nWrote {}/trace.json (open in https://ui.perfetto.dev or chrome://tracing), {}/report.html and "
               "{}/summary.txt\n",
               text, options_.output_dir, options_.output_dir, options_.output_dir);
    return ok ? 0 : 1;
  }

  int run() {
    sigset_t stop_signals = block_stop_signals();
    drop_capabilities();
    pgserver_.set_fingerprints(false);  // no recording: server-side statements feed the series, which need the verb

    // The port first: a port in use is a one-line error before anything is loaded into the kernel.
    std::unique_ptr<exporter::MetricsServer> server;
    try {
      server = std::make_unique<exporter::MetricsServer>(options_.listen);
    } catch (const exporter::ListenError& e) {
      log::error("{}", e.what());
      return 1;
    }

    if (!start_families()) return 1;

    server->add(std::make_shared<exporter::FunctionCollectable>([this] { return collect(); }));
    log::info("synapse-profiler {} serving http://{}/metrics (port {}) and /healthz", SP_VERSION, options_.listen,
              server->port());

    rescan();  // the first scan attaches to what is running before we report being up
    log_first_attach_pass();
    server->serve_health();
    scraper_.start();
    std::thread scanner([this] { scan_loop(); });

    int sig = 0;
    sigwait(&stop_signals, &sig);
    log::info("received {}, detaching", sig == SIGINT ? "SIGINT" : "SIGTERM");
    stopping_ = true;
    waker_.interrupt();
    scanner.join();
    scraper_.stop();
    server.reset();
    log::info("stopped");
    return 0;
  }

 private:
  // Blocks the stop signals before any thread starts, so that every thread inherits the mask and only the main
  // thread's sigwait()/sigtimedwait() receives them.
  static sigset_t block_stop_signals() {
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    return stop_signals;
  }

  // Before any thread starts (capabilities are per thread; threads inherit them): keep only what loading, attaching
  // and every later rescan need (new workers are attached with the same privileges), drop the rest for good.
  void drop_capabilities() {
    std::uint64_t keep = cap_mask({Cap::SysAdmin, Cap::SysPtrace, Cap::Bpf, Cap::Perfmon, Cap::DacReadSearch,
                                   Cap::SysResource});
    // A privileged port needs CAP_NET_BIND_SERVICE until it is bound (a bad --listen fails later, at the bind).
    if (options_.command == Command::Run) {
      try {
        if (const int port = exporter::listen_port(options_.listen); port > 0 && port < 1024) {
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

  // A family that cannot load is reported and the others keep working; false when none loads at all (no
  // privileges, no BPF): then there is nothing to run for, and the caller exits with one clear line.
  bool start_families() {
    // Without CAP_BPF or CAP_SYS_ADMIN nothing can load: say so in one line instead of one failure per family.
    if (auto caps = own_effective_caps(); caps && !has_cap(*caps, Cap::SysAdmin) && !has_cap(*caps, Cap::Bpf)) {
      log::error("cannot load BPF programs: this process has neither CAP_SYS_ADMIN nor CAP_BPF; run as root, or "
                 "grant CAP_SYS_ADMIN and CAP_SYS_PTRACE (`synapse-profiler doctor` says what is missing)");
      return false;
    }
    bpf::init_libbpf(options_.verbose);
    // Without the kernel's BTF no CO-RE object loads: one line with the remedy instead of one failure per family.
    if (const std::string why = bpf::kernel_btf_problem(); !why.empty()) {
      log::error("{}; the kernel must be built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are): boot "
                 "such a kernel (`synapse-profiler doctor` checks it)",
                 why);
      return false;
    }
    // BPF reports ids of the agent's own PID namespace; PIDs read under another namespace's /proc would never match.
    if (auto mismatch = proc_root_pid_ns_mismatch(options_.proc_root); !mismatch.empty()) log::warn("{}", mismatch);
    std::string first_error;
    auto started = [&](bool ok, const char* what, const std::string& error) {
      if (!ok) {
        log::warn("{} probes unavailable: {}", what, error);
        if (first_error.empty()) first_error = error;
      }
      return ok ? 1 : 0;
    };
    int n = 0;
    std::string e1, e2, e3, e4;
    n += started(gc_.start(e1), "gc", e1);
    n += started(libpq_.start(e2), "libpq", e2);
    n += started(pgserver_.start(e3), "postgres", e3);
    n += started(blockio_.start(e4), "block I/O", e4);
    if (std::string why; !nvme_.start(why)) log::info("nvme command probes off: {}", why);
    // Every ring the BPF side may ask to have drained early (a burst filling it before the next 250 ms tick).
    for (const auto& fds : {gc_.ring_fds(), libpq_.ring_fds(), pgserver_.ring_fds(), blockio_.ring_fds()}) {
      for (int fd : fds) {
        if (std::string why; !waker_.watch(fd, why)) log::warn("{}: its records are drained every 250 ms only", why);
      }
    }
    if (n == 0) {
      log::error("no probe family could be loaded ({}): run as root, or with CAP_SYS_ADMIN and CAP_SYS_PTRACE; "
                 "`synapse-profiler doctor` says what is missing",
                 first_error);
    }
    return n > 0;
  }

  // How long start-up took, for operators and for scripts/bench_agent.sh: from the process's start (exec, as the
  // kernel records it) to the end of the first scan, which has loaded every family and attached to every Synapse
  // process running then.
  void log_first_attach_pass() {
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
    std::size_t workers = 0;
    {
      std::lock_guard lock(mutex_);
      workers = latest_.workers.size();
    }
    auto attached = [](const std::vector<ProbeStatus>& status) {
      std::size_t n = 0;
      for (const auto& st : status) n += st.attached ? 1 : 0;
      return n;
    };
    log::info("first attach pass done {} s after process start: {} Synapse processes, gc attached to {}, libpq to {}, "
              "{} PostgreSQL clusters",
              since_start, workers, attached(gc_.snapshot().status), attached(libpq_.snapshot().status),
              pgserver_.snapshot().clusters_attached);
  }

  bool recording(const WorkerLabels& w) const {
    return recording_ && w.worker != kOtherWorker.worker && (record_workers_.empty() || record_workers_.count(w.worker));
  }
  void count(bool recorded, std::atomic<std::size_t>& counter) {
    if (recorded) ++counter;
    recorded_dropped_ = recording_->dropped();
  }

  // Probe data is polled every 250 ms; the ring buffers are also drained at once when one fills past a quarter (the
  // BPF side never wakes us per event: RingWaker), without the rest of a poll (kernel map walks, correlator ticks),
  // which waits for the timer. Discovery runs every --rescan-interval.
  void scan_loop() {
    using Clock = std::chrono::steady_clock;
    constexpr auto kPollInterval = std::chrono::milliseconds(250);
    auto next_scan = Clock::now() + options_.rescan_interval;
    auto next_poll = Clock::now() + kPollInterval;
    while (!stopping_) {
      const auto now = Clock::now();
      const auto wake_at = std::min(next_scan, next_poll);
      if (wake_at > now) {
        // Rounded up: a wait rounded down to 0 ms would spin until the deadline.
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now);
        if (waker_.wait(left) == RingWaker::Woken::Ring) {
          drain_rings();
          ++early_drains_;
          continue;
        }
      }
      if (stopping_) break;
      if (Clock::now() >= next_scan) {
        rescan();
        next_scan = Clock::now() + options_.rescan_interval;
        // Give freed heap back to the kernel: a burst of workers (a deployment rolling 64 pods) or one large
        // exposition leaves glibc's arenas at their high-water mark otherwise, and RSS would only ever grow.
        malloc_trim(0);
      }
      poll_all();
      ++polls_;
      next_poll = Clock::now() + kPollInterval;
    }
  }

  // Only the ring buffers: their records go to the batches that the next poll_all() hands on.
  void drain_rings() {
    gc_.drain();
    libpq_.drain();
    pgserver_.drain();
    blockio_.drain();
  }

  // Drains every probe family, then feeds the correlator: the batch of events, a tick (everything that ended by now
  // is in), and the scrapes that finished since the last round.
  void poll_all() {
    gc_.poll();
    libpq_.poll();
    pgserver_.poll();
    blockio_.poll();
    nvme_.poll();
    const std::uint64_t now = monotonic_ns(std::chrono::steady_clock::now());
    // Scrapes end every --scrape-interval, polls come every 250 ms: copy the results only when there are new ones.
    std::map<std::string, ScrapeResult> scraped;
    if (const std::uint64_t g = scraper_.generation(); g != scrape_generation_) {
      scrape_generation_ = g;
      scraped = scraper_.latest();
    }
    std::lock_guard lock(correlator_mutex_);
    for (const auto& e : busy_batch_) {
      if (e.cause == Cause::Gc) correlator_.add_gc(e.worker, e.start_ns, e.end_ns);
      if (e.cause == Cause::Disk) correlator_.add_disk(e.worker, e.start_ns, e.end_ns);
    }
    for (const auto& q : client_batch_) {
      // Synapse's synapse_storage_query_time times cursor.execute(), not the COMMIT/ROLLBACK psycopg2 sends itself.
      correlator_.add_query(q.worker, q.start_ns, q.end_ns, q.verb != "COMMIT" && q.verb != "ROLLBACK");
      // Synapse's transaction time spans the whole new_transaction, COMMIT included.
      if (!q.desc.empty()) desc_ratio_.add_query(q.worker, q.desc, q.end_ns, q.end_ns - q.start_ns);
      desc_matcher_.add_client(q.worker, q.tid, q.start_ns, q.end_ns, q.desc);
    }
    for (const auto& q : server_batch_) {
      correlator_.add_server(q.worker, q.start_ns, q.end_ns);
      desc_matcher_.add_server(q.worker, q.tgid, q.start_ns, q.end_ns, false);
    }
    for (const auto& l : lock_batch_) desc_matcher_.add_server(l.worker, l.backend, l.start_ns, l.end_ns, true);
    busy_batch_.clear();
    client_batch_.clear();
    server_batch_.clear();
    lock_batch_.clear();
    desc_matcher_.settle(now);
    correlator_.tick(now);
    desc_ratio_.tick(now);
    for (const auto& [worker, r] : scraped) {
      if (!r.up || !r.families) continue;
      auto& seen = last_scrape_[worker];
      if (r.started <= seen) continue;
      seen = r.started;
      SynapseCounters counters = synapse_counters(*r.families);
      const WorkerLabels labels{worker, r.worker_app, r.pod};
      correlator_.add_scrape(labels, monotonic_ns(r.started), counters);
      desc_ratio_.add_scrape(labels, monotonic_ns(r.started), transaction_seconds_by_desc(*r.families));
      if (recording(labels)) recording_->add_scrape({labels, monotonic_ns(r.started), counters});
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
    // A process that exited between being found and being attached (a crash loop, a short-lived helper) is skipped
    // with one warning naming it; its remains are dropped at the next rescan like any exited process.
    for (const auto& w : diff.added) {
      if (!process_running(options_.proc_root, w.key)) {
        log::warn("Synapse process pid {} worker {} exited before it could be attached; skipped", w.host_pid,
                  w.worker_name);
      }
    }
    std::vector<ScrapeTarget> targets;
    const std::uint64_t own_netns = netns_inode("/proc/thread-self/ns/net");
    for (const auto& w : result.workers) {
      if (!w.metrics_url) continue;
      ScrapeTarget t{w.worker_name, w.worker_app, *w.metrics_url, labels_of(w).pod};
      // A worker in another network namespace (a pod seen from the node) is scraped from inside it: its
      // 127.0.0.1 is the pod's loopback, not ours.
      std::string netns_path = fmt::format("{}/{}/ns/net", options_.proc_root, w.host_pid);
      const std::uint64_t netns = netns_inode(netns_path);
      if (netns != 0 && own_netns != 0 && netns != own_netns) {
        t.netns_path = std::move(netns_path);
        t.netns_inode = netns;
      }
      targets.push_back(std::move(t));
    }
    scraper_.set_targets(std::move(targets));
    for (const auto& w : diff.removed) {
      worker_of_.erase(w.host_pid);
      overlap_.forget(static_cast<std::uint32_t>(w.host_pid));
    }
    for (const auto& w : result.workers) worker_of_[w.host_pid] = labels_of(w);
    {
      // A worker whose every process has gone stops being correlated (a restart under the same name continues).
      std::set<WorkerLabels> present;
      for (const auto& [pid, labels] : worker_of_) present.insert(labels);
      const std::uint64_t now = monotonic_ns(std::chrono::steady_clock::now());
      std::lock_guard lock(correlator_mutex_);
      for (const auto& w : diff.removed) {
        const WorkerLabels labels = labels_of(w);
        if (!present.count(labels)) {
          correlator_.forget(labels);
          desc_matcher_.forget(labels);
          desc_ratio_.forget(labels);
          last_scrape_.erase(w.worker_name);
          gone_since_.emplace(labels, now);
        }
      }
      for (const auto& labels : present) {
        correlator_.watch(labels, now);
        gone_since_.erase(labels);
      }
    }
    forget_long_gone(monotonic_ns(std::chrono::steady_clock::now()));
    std::lock_guard lock(mutex_);
    latest_ = std::move(result);
    ++scans_;
  }

  // A worker whose processes have all been gone for --forget-after loses every series, so that the agent's memory and
  // its exposition follow the workers of the recent past, not every name seen since it started (a churning
  // deployment names workers after pods). Scanning thread only.
  void forget_long_gone(std::uint64_t now) {
    if (!options_.forget_after) return;
    const auto limit = static_cast<std::uint64_t>(options_.forget_after->count());
    std::vector<WorkerLabels> expired;
    for (auto it = gone_since_.begin(); it != gone_since_.end();) {
      if (now - it->second < limit) {
        ++it;
        continue;
      }
      expired.push_back(it->first);
      it = gone_since_.erase(it);
    }
    for (const auto& w : expired) {
      log::info("worker {} has been gone for {}: its series are dropped", w.worker,
                format_duration(*options_.forget_after));
      gc_.forget_worker(w);
      libpq_.forget_worker(w);
      pgserver_.forget_worker(w);
      blockio_.forget_worker(w);
      {
        std::lock_guard lock(correlator_mutex_);
        desc_matcher_.forget_totals(w);
      }
      std::lock_guard lock(mutex_);
      overlap_ns_.erase(w);
    }
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
    {
      std::map<std::pair<WorkerLabels, std::string>, double> ratio;
      std::map<std::pair<WorkerLabels, std::string>, DescServerTotals> server_by_desc;
      {
        std::lock_guard lock(correlator_mutex_);
        ratio = desc_ratio_.snapshot();
        server_by_desc = desc_matcher_.totals();
      }
      for (auto& f : exporter::db_desc_families(db, options_.db_desc_labels, ratio, server_by_desc)) {
        families.push_back(std::move(f));
      }
    }
    DbServerSnapshot server = pgserver_.snapshot();
    for (auto& f : exporter::db_server_families(server)) families.push_back(std::move(f));
    IoSnapshot io = blockio_.snapshot();
    for (auto& f : exporter::disk_io_families(io)) families.push_back(std::move(f));
    for (auto& f : exporter::nvme_families(nvme_.snapshot())) families.push_back(std::move(f));
    std::vector<ProbeStatus> status = gc.status;
    status.insert(status.end(), db.status.begin(), db.status.end());
    for (const auto& d : db.desc_status) {
      ProbeStatus st;
      st.labels = d.labels;
      st.host_pid = d.host_pid;
      st.probe = "libpq_desc";
      st.method = "python_frames";
      st.attached = d.active;
      st.error = d.detail;
      status.push_back(st);
    }
    families.push_back(exporter::probe_attached_family(status));
    {
      std::map<WorkerLabels, WorkerCorrelation> corr;
      {
        std::lock_guard lock(correlator_mutex_);
        corr = correlator_.snapshot();
      }
      std::map<WorkerLabels, std::uint64_t> overlap;
      {
        std::lock_guard lock(mutex_);
        overlap = overlap_ns_;
      }
      for (auto& f : exporter::correlation_families(corr, overlap)) families.push_back(std::move(f));
    }
    auto scraped = scraper_.latest();
    for (auto& f : exporter::scrape_status_families(scraped)) families.push_back(std::move(f));
    for (auto& f : exporter::passthrough_families(scraped, passthrough_)) families.push_back(std::move(f));
    families.push_back(exporter::events_lost_family(
        {{"gc", gc.events_lost}, {"libpq", db.events_lost}, {"postgres", server.events_lost}, {"block_io", io.events_lost}}));
    families.push_back(exporter::hook_misses_family({{"gc", gc_.hook_misses()},
                                                     {"libpq", libpq_.hook_misses()},
                                                     {"postgres", pgserver_.hook_misses()},
                                                     {"block_io", blockio_.hook_misses()},
                                                     {"nvme", nvme_.hook_misses()}}));
    for (auto& f : exporter::agent_loop_families(polls_, early_drains_, scans_)) families.push_back(std::move(f));
    return families;
  }

  const CliOptions& options_;
  const DiscoveryOptions discovery_;
  DiscoveryState state_;  // touched by the scanning thread only (and by run() before it starts)
  bpf::GcFamily gc_;
  bpf::LibpqFamily libpq_;
  bpf::PgServerFamily pgserver_;
  bpf::BlockIoFamily blockio_;
  bpf::NvmeFamily nvme_;
  Scraper scraper_;
  OverlapTracker overlap_;                   // scanning thread only
  std::map<int, WorkerLabels> worker_of_;    // host PID -> labels, scanning thread only
  std::map<WorkerLabels, std::uint64_t> overlap_ns_;  // guarded by mutex_
  // Events queued by the sinks until poll_all() (scanning thread only): GC pauses and disk requests, client and
  // server-side queries, lock waits.
  struct BusyEvent {
    Cause cause;  // Gc or Disk
    WorkerLabels worker;
    std::uint64_t start_ns, end_ns;
  };
  std::vector<BusyEvent> busy_batch_;
  std::vector<QueryEvent> client_batch_, server_batch_;
  std::vector<RecordedLockWait> lock_batch_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_scrape_;  // scanning thread only
  std::map<WorkerLabels, std::uint64_t> gone_since_;  // workers with no process left -> when; scanning thread only
  std::uint64_t scrape_generation_ = 0;  // scraper_.generation() at the last copy; scanning thread only
  std::mutex correlator_mutex_;
  Correlator correlator_;  // guarded by correlator_mutex_
  DescLibpqRatio desc_ratio_;  // guarded by correlator_mutex_
  DescMatcher desc_matcher_;  // guarded by correlator_mutex_
  // record: the recording is fed on the scanning thread only; the main thread reads it after joining that thread.
  Recording* recording_ = nullptr;
  std::set<std::string> record_workers_;
  std::atomic<std::size_t> recorded_gc_{0}, recorded_queries_{0}, recorded_server_{0}, recorded_io_{0};
  std::atomic<std::uint64_t> recorded_dropped_{0};
  std::atomic<std::uint64_t> polls_{0};  // completed poll_all() rounds of the scanning loop
  std::atomic<std::uint64_t> scans_{0};  // completed rescan() calls
  exporter::PassthroughFilter passthrough_;
  std::mutex mutex_;
  RingWaker waker_;  // the scanning thread waits here: the poll timer, a filling ring, or stop
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> early_drains_{0};  // ring drains a filling ring asked for, between two polls
  ScanResult latest_;
};

}  // namespace

DiscoveryOptions discovery_options(const CliOptions& o) {
  DiscoveryOptions d;
  d.proc_root = o.proc_root;
  d.pod_log_dirs = o.pod_log_dirs;
  d.pids = o.pids;
  d.worker_name = o.worker_name;
  d.metrics_urls = o.metrics_urls;
  return d;
}

int run_agent(const CliOptions& options) { return Agent(options).run(); }

int run_record(const CliOptions& options) { return Agent(options).record(); }

}  // namespace sp::cli
