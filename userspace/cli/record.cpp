// `record`: the same discovery and probes as `run`, no HTTP server; every event of the selected workers goes into a
// Recording for --duration (or until SIGINT/SIGTERM), then the trace, report and summary are written.
#include <fmt/core.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "cli/agent_setup.h"
#include "cli/commands.h"
#include "core/record/recording.h"
#include "core/record/report_html.h"
#include "core/record/summary.h"
#include "core/record/recording_sink.h"
#include "core/record/trace_json.h"
#include "core/util/clock.h"
#include "core/util/log.h"

namespace sp::cli {
namespace {

namespace fs = std::filesystem;

// Fails early, before anything is loaded, when the output cannot be written.
bool output_writable(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    log::error("cannot create the output directory {}: {}", dir, ec ? ec.message() : "not a directory");
    return false;
  }
  for (const char* name : {"trace.json.gz", "report.html", "summary.txt"}) {
    std::ofstream probe(fs::path(dir) / name, std::ios::app);
    if (!probe) {
      log::error("cannot write {} in {}", name, dir);
      return false;
    }
  }
  return true;
}

// Waits for the duration or a stop signal, with a progress line on a terminal. Returns what ended it.
std::string wait_for_end(const CliOptions& o, sigset_t& stop_signals, const RecordingSink& sink) {
  const bool tty = isatty(STDERR_FILENO) == 1;
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + o.record_duration;
  const double total_s = std::chrono::duration<double>(o.record_duration).count();
  std::string ended_by = "the duration";
  log::info("recording for {:.0f} s into {} (Ctrl-C ends early and still writes everything)", total_s, o.output_dir);
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
      const auto c = sink.counts();
      fmt::print(stderr, "\r[{:5.0f} s / {:.0f} s] gc {}  queries {}  server {}  disk {}  dropped {}   ", elapsed,
                 total_s, c.gc, c.queries, c.server, c.io, c.dropped);
    }
  }
  if (tty) fmt::print(stderr, "\n");
  return ended_by;
}

bool write_outputs(const std::string& dir, const Recording& rec, bool trace_ok) {
  const RecordingSummary summary = summarize(rec);
  bool ok = trace_ok;
  auto write = [&](const char* name, const std::function<void(std::ostream&)>& body) {
    const fs::path path = fs::path(dir) / name;
    std::ofstream out(path, std::ios::trunc);
    body(out);
    out.close();
    if (!out) {
      log::error("writing {} failed", path.string());
      ok = false;
    }
  };
  write("report.html", [&](std::ostream& o) { o << render_report_html(summary); });
  const std::string text = render_summary_text(summary);
  write("summary.txt", [&](std::ostream& o) { o << text; });
  fmt::print("{}\nWrote {}/trace.json.gz (open it as it is in https://ui.perfetto.dev or chrome://tracing), "
             "{}/report.html and {}/summary.txt\n",
             text, dir, dir, dir);
  return ok;
}

}  // namespace

int run_record(const CliOptions& options) {
  sigset_t stop_signals = block_stop_signals();
  drop_capabilities(options);
  if (!output_writable(options.output_dir)) return 1;
  const std::set<std::string> wanted(options.record_workers.begin(), options.record_workers.end());

  auto loop = start_profiling(options, /*keep_fingerprints=*/true);
  if (!loop) return 1;
  // The trace goes to disk as the events arrive; only the summary's aggregates stay in memory.
  const std::string trace_path = (fs::path(options.output_dir) / "trace.json.gz").string();
  std::string error;
  auto trace_file = GzipTraceOutput::open(trace_path, error);
  if (!trace_file) {
    log::error("{}", error);
    return 1;
  }
  TraceStream trace(*trace_file);
  Recording rec(options.max_events);
  rec.set_trace(&trace);
  rec.start(monotonic_ns(), std::chrono::system_clock::now());
  RecordingSink sink(rec, wanted);
  loop->add_sink(&sink);
  loop->first_scan();
  const auto running = loop->workers();
  for (const auto& name : wanted) {
    bool found = false;
    for (const auto& w : running) found |= w.worker_name == name;
    if (!found) log::warn("record: no worker named {} is running (yet); it is recorded if it appears", name);
  }
  loop->start();

  const std::string ended_by = wait_for_end(options, stop_signals, sink);
  rec.finish(monotonic_ns());
  loop->stop();  // its last poll adds what ended before the finish and is still in the ring buffers
  loop.reset();

  // The JSON is closed and the gzip stream ended properly however the recording ended (duration, SIGINT, SIGTERM).
  const bool trace_ok = trace.finish(rec.events(), rec.dropped(), rec.max_events(), error);
  if (!trace_ok) log::error("{}", error);
  if (rec.cap_reached()) {
    log::warn("recording ended by {}: the trace stopped after {} events (--max-events); {} events not written to "
              "trace.json.gz (the summary and report still count them)",
              ended_by, rec.events(), rec.dropped());
  } else {
    log::info("recording ended by {}: {} events written to trace.json.gz", ended_by, rec.events());
  }
  return write_outputs(options.output_dir, rec, trace_ok) ? 0 : 1;
}

}  // namespace sp::cli
