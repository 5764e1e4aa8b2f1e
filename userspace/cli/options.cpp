#include "cli/options.h"

#include <boost/program_options.hpp>
#include <fmt/core.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "core/record/recording.h"  // kDefaultMaxEvents
#include "core/util/duration.h"

namespace po = boost::program_options;

namespace sp::cli {
namespace {

constexpr const char* kOverview = R"(synapse-profiler: eBPF profiler and Prometheus exporter for Synapse (Matrix homeserver)

Usage: synapse-profiler [COMMAND] [OPTIONS]

Commands:
  run       (default) find Synapse processes, attach probes, serve Prometheus metrics until SIGINT/SIGTERM
  workers   list the Synapse processes found on this host and what would be probed
  doctor    check privileges, kernel features and every discovered process; exit 0 only if all needed checks pass
  record    a deep-dive session: record every GC pause, query and disk request for --duration, then write a trace
            (trace.json.gz for Perfetto / chrome://tracing), report.html and summary.txt to --output DIR

'synapse-profiler COMMAND --help' explains every option of a command.
)";

struct Raw {
  std::vector<int> pids;
  std::string worker_name;
  std::vector<std::string> metrics_urls;
  std::string proc_root;
  std::string pod_log_dir;
  std::string container_log_dir;
  std::string rescan;
  std::string listen;
  std::string config;
  std::string scrape_interval;
  std::string scrape_timeout;
  std::string window;
  std::string forget_after;
  std::string duration;
  std::vector<std::string> workers;
};

po::options_description target_options(Raw& raw) {
  po::options_description d("Targets (default: every Synapse process on the host)");
  d.add_options()
      ("pid", po::value(&raw.pids)->composing(),
       "profile only this PID (repeatable); no command-line check is made, so any process can be pinned")
      ("worker-name", po::value(&raw.worker_name),
       "name to report for the single target (sidecar use); overrides the name read from its config")
      ("metrics-url", po::value(&raw.metrics_urls)->composing(),
       "NAME=URL: scrape worker NAME's Synapse metrics at URL instead of the URL derived from its config "
       "(repeatable)")
      ("rescan-interval", po::value(&raw.rescan)->default_value("5s"),
       "how often to look for new and exited processes (e.g. 2s, 500ms)")
      ("proc-root", po::value(&raw.proc_root)->default_value("/proc"),
       "where /proc is mounted (a host /proc bind-mounted into a container, or a test tree)")
      ("pod-log-dir", po::value(&raw.pod_log_dir)->default_value("/var/log/pods"),
       "the kubelet's pod log directory (NAMESPACE_POD_UID/CONTAINER/): names the pod and namespace of a worker "
       "whose cgroup is a Kubernetes pod's (node-wide mode); only entry names are read")
      ("container-log-dir", po::value(&raw.container_log_dir)->default_value("/var/log/containers"),
       "the kubelet's container log links (POD_NAMESPACE_CONTAINER-ID.log): name the container of such a worker");
  return d;
}

po::options_description common_options(Raw& raw, CliOptions& o) {
  po::options_description d("General");
  d.add_options()
      ("help,h", "show this help")
      ("version", "print the version and exit")
      ("verbose,v", po::bool_switch(&o.verbose), "debug logging, including libbpf's own messages")
      ("quiet,q", po::bool_switch(&o.quiet), "only warnings and errors")
      ("config", po::value(&raw.config),
       "read options from FILE as well (lines 'option = value', e.g. 'listen = 127.0.0.1:9477' or 'pid = 42'); "
       "the command line wins over the file");
  return d;
}

std::optional<Command> command_from(const std::string& word) {
  if (word == "run") return Command::Run;
  if (word == "workers") return Command::Workers;
  if (word == "doctor") return Command::Doctor;
  if (word == "record") return Command::Record;
  return std::nullopt;
}

const char* command_name(Command c) {
  switch (c) {
    case Command::Run: return "run";
    case Command::Workers: return "workers";
    case Command::Doctor: return "doctor";
    case Command::Record: return "record";
  }
  return "run";
}

ParseOutcome usage_error(const std::string& msg) {
  return {std::nullopt, 2, "synapse-profiler: " + msg + "\nTry 'synapse-profiler --help'."};
}

}  // namespace

ParseOutcome parse_cli(int argc, const char* const* argv) {
  CliOptions o;
  Raw raw;
  int first = 1;
  if (argc > 1 && argv[1][0] != '-') {
    auto cmd = command_from(argv[1]);
    if (!cmd) return usage_error(fmt::format("unknown command '{}'", argv[1]));
    o.command = *cmd;
    first = 2;
  }

  po::options_description visible = common_options(raw, o);
  visible.add(target_options(raw));
  po::options_description specific(fmt::format("Options of '{}'", command_name(o.command)));
  switch (o.command) {
    case Command::Record:
      specific.add_options()("output,o", po::value(&o.output_dir),
                             "directory to write trace.json.gz, report.html and summary.txt to (created if missing; "
                             "required)")
          ("duration", po::value(&raw.duration)->default_value("60s"),
           "how long to record; Ctrl-C ends earlier and still writes everything")
          ("workers", po::value(&raw.workers)->composing(),
           "record only these workers (names as `workers` prints them, comma-separated or repeated); default: all")
          ("max-events", po::value(&o.max_events)->default_value(kDefaultMaxEvents),
           "cap on events written to the trace (GC pauses, queries, lock waits, disk requests; about 20 bytes each "
           "compressed); later events are not written but still counted in the summary and report, which say how "
           "many were cut");
      [[fallthrough]];
    case Command::Run:
      if (o.command == Command::Run) {
        specific.add_options()("listen", po::value(&raw.listen)->default_value(kDefaultListen),
                               "address and port of the Prometheus endpoint (/metrics, /healthz, /readyz): "
                               "127.0.0.1:PORT, [::1]:PORT (IPv6 only), [::]:PORT or :PORT (IPv4 and IPv6)");
      }
      specific.add_options()("libpq-async", po::value(&o.libpq_async)->default_value("auto"),
           "probe libpq's asynchronous API (PQsendQuery*/PQgetResult) too: on, off, or auto = every process except "
           "psycopg2 users (psycopg2, what Synapse uses, only calls the synchronous API; the extra probes would cost "
           "four traps per query)")
          ("devices", po::value(&o.devices)->composing(),
           "block devices to report, as shell globs of their names (e.g. 'nvme*', 'vd?'; repeatable); default: "
           "every disk")
          ("scrape-interval", po::value(&raw.scrape_interval)->default_value("15s"),
           "how often each worker's own metrics endpoint is scraped")
          ("scrape-timeout", po::value(&raw.scrape_timeout)->default_value("5s"),
           "time allowed for one scrape (connect, transfer, parse); a worker that exceeds it is reported down")
          ("window", po::value(&raw.window)->default_value("60s"),
           "how far back synapse_profiler_time_share and synapse_profiler_gc_coverage_ratio look (at least 1s; "
           "the coverage ratio needs two scrapes inside it, so keep it above twice --scrape-interval)")
          ("forget-after", po::value(&raw.forget_after)->default_value("1h"),
           "drop every series of a worker whose processes have all been gone this long (a restart within it "
           "continues the worker's counters; after it they start again from zero); 'never' keeps every worker name "
           "ever seen, so memory grows with them")
          ("synapse-metrics-include", po::value(&o.metrics_include),
           "re-expose only the scraped metric families whose name matches this regular expression (default: all)")
          ("synapse-metrics-exclude", po::value(&o.metrics_exclude),
           "do not re-expose scraped metric families whose name matches this regular expression")
          ("db-table-labels", po::value(&o.db_table_labels)->default_value(20),
           "how many tables keep their own `table` label on query series (those with the most query time); the rest "
           "are table=\"other\"")
          ("db-desc-labels", po::value(&o.db_desc_labels)->default_value(50),
           "how many Synapse transaction names keep their own `desc` label on the db_desc_* series (those with the "
           "most libpq time over all workers); the rest are desc=\"other\"");
      break;
    case Command::Workers:
      specific.add_options()("json", po::bool_switch(&o.json),
                             "print a JSON array of objects (pid, worker, worker_app, config_files, metrics_url, ...)");
      break;
    case Command::Doctor:
      break;
  }
  visible.add(specific);

  po::variables_map vm;
  try {
    std::vector<std::string> args(argv + first, argv + argc);
    po::store(po::command_line_parser(args).options(visible).run(), vm);
    if (vm.count("config")) {
      std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) return usage_error(fmt::format("cannot read config file {}", path));
      po::options_description file_opts;
      file_opts.add(target_options(raw)).add(specific);
      po::store(po::parse_config_file(in, file_opts), vm);
    }
    if (vm.count("version")) return {std::nullopt, 0, fmt::format("synapse-profiler {}", SP_VERSION)};
    if (vm.count("help")) {
      std::ostringstream text;
      text << (first == 1 ? kOverview : "") << "\n" << visible;
      return {std::nullopt, 0, text.str()};
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }

  o.pids = raw.pids;
  for (int pid : o.pids) {
    if (pid <= 0) return usage_error(fmt::format("--pid {}: not a process ID", pid));
  }
  if (!raw.worker_name.empty()) o.worker_name = raw.worker_name;
  for (const auto& spec : raw.metrics_urls) {
    auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return usage_error(fmt::format("--metrics-url '{}': expected NAME=URL", spec));
    }
    std::string url = spec.substr(eq + 1);
    if (!url.starts_with("http://") && !url.starts_with("https://")) {
      return usage_error(fmt::format("--metrics-url '{}': the URL must start with http:// or https://", spec));
    }
    o.metrics_urls[spec.substr(0, eq)] = url;
  }
  if (o.command == Command::Record) {
    if (o.output_dir.empty()) return usage_error("record needs --output DIR");
    auto duration = parse_duration(raw.duration);
    if (!duration || duration->count() < 100'000'000) {
      return usage_error(fmt::format("--duration '{}': expected a duration of at least 100ms", raw.duration));
    }
    o.record_duration = *duration;
    if (o.max_events == 0) return usage_error("--max-events must be at least 1");
    for (const auto& list : raw.workers) {
      std::size_t from = 0;
      while (from <= list.size()) {
        std::size_t comma = list.find(',', from);
        std::string name = list.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
        if (!name.empty()) o.record_workers.push_back(name);
        if (comma == std::string::npos) break;
        from = comma + 1;
      }
    }
  }
  if (o.command == Command::Run || o.command == Command::Record) {
    auto interval = parse_duration(raw.scrape_interval);
    auto timeout = parse_duration(raw.scrape_timeout);
    if (!interval || interval->count() < 100'000'000) {
      return usage_error(fmt::format("--scrape-interval '{}': expected a duration of at least 100ms", raw.scrape_interval));
    }
    if (!timeout || timeout->count() < 10'000'000) {
      return usage_error(fmt::format("--scrape-timeout '{}': expected a duration of at least 10ms", raw.scrape_timeout));
    }
    o.scrape_interval = *interval;
    o.scrape_timeout = *timeout;
    auto window = parse_duration(raw.window);
    if (!window || window->count() < 1'000'000'000) {
      return usage_error(fmt::format("--window '{}': expected a duration of at least 1s", raw.window));
    }
    o.window = *window;
    if (raw.forget_after == "never") {
      o.forget_after = std::nullopt;
    } else {
      auto forget = parse_duration(raw.forget_after);
      if (!forget || forget->count() < 1'000'000'000) {
        return usage_error(
            fmt::format("--forget-after '{}': expected a duration of at least 1s (e.g. 1h) or never", raw.forget_after));
      }
      o.forget_after = *forget;
    }
    for (const auto* re : {&o.metrics_include, &o.metrics_exclude}) {
      try {
        if (!re->empty()) std::regex check(*re);
      } catch (const std::regex_error& e) {
        return usage_error(fmt::format("'{}' is not a valid regular expression: {}", *re, e.what()));
      }
    }
  }
  if (o.libpq_async != "auto" && o.libpq_async != "on" && o.libpq_async != "off") {
    return usage_error(fmt::format("--libpq-async '{}': expected auto, on or off", o.libpq_async));
  }
  o.proc_root = raw.proc_root;
  o.pod_log_dirs.pods = raw.pod_log_dir;
  o.pod_log_dirs.containers = raw.container_log_dir;
  auto rescan = parse_duration(raw.rescan);
  if (!rescan || rescan->count() < 100'000'000) {
    return usage_error(fmt::format("--rescan-interval '{}': expected a duration of at least 100ms (e.g. 5s)", raw.rescan));
  }
  o.rescan_interval = *rescan;
  if (!raw.listen.empty()) o.listen = raw.listen;
  o.config_file = raw.config;
  if (o.verbose && o.quiet) return usage_error("--verbose and --quiet exclude each other");
  return {o, 0, {}};
}

}  // namespace sp::cli
