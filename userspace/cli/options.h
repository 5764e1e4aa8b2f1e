// Command-line and config-file options of every subcommand (Boost.Program_options). Parsing is a pure function of
// argv (and the config file it names) so that it is unit-tested; nothing here touches the kernel.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/proc/pod_identity.h"

namespace sp::cli {

enum class Command { Run, Workers, Doctor, Record };

struct CliOptions {
  Command command = Command::Run;
  // Targets.
  std::vector<int> pids;
  std::optional<std::string> worker_name;
  std::map<std::string, std::string> metrics_urls;
  std::string proc_root = "/proc";
  PodLogDirs pod_log_dirs;  // --pod-log-dir, --container-log-dir
  std::chrono::nanoseconds rescan_interval = std::chrono::seconds(5);
  // run
  std::string listen = "0.0.0.0:9477";
  std::string libpq_async = "auto";  // auto | on | off
  std::size_t db_table_labels = 20;
  std::size_t db_desc_labels = 50;   // Synapse transaction names kept as `desc` labels (top by query time)
  std::vector<std::string> devices;  // shell globs of block device names; empty: every disk
  std::chrono::nanoseconds scrape_interval = std::chrono::seconds(15);
  std::chrono::nanoseconds scrape_timeout = std::chrono::seconds(5);
  std::string metrics_include;  // regex over family names; empty: everything
  std::string metrics_exclude;  // regex; empty: nothing
  std::chrono::nanoseconds window = std::chrono::seconds(60);  // time_share and gc_coverage_ratio look this far back
  // A worker name gone for this long loses its series (nullopt: never; --forget-after never).
  std::optional<std::chrono::nanoseconds> forget_after = std::chrono::hours(1);
  // record
  std::chrono::nanoseconds record_duration = std::chrono::seconds(60);
  std::string output_dir;
  std::vector<std::string> record_workers;  // worker names; empty: all
  std::size_t max_events = 10'000'000;  // kDefaultMaxEvents (core/record/recording.h)
  // workers
  bool json = false;
  // logging
  bool verbose = false;
  bool quiet = false;
  std::string config_file;
};

struct ParseOutcome {
  std::optional<CliOptions> options;  // set when the command should run
  int exit_code = 0;                  // when !options: 0 for --help/--version, 2 for usage errors
  std::string message;                // help text, version, or a one-line error
};

ParseOutcome parse_cli(int argc, const char* const* argv);

inline constexpr const char* kDefaultListen = "0.0.0.0:9477";

}  // namespace sp::cli
