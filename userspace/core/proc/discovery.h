// Discovery of Synapse processes (main process and workers) and PostgreSQL processes from a /proc tree.
//
// Pure logic: it reads files below `proc_root` only, so tests hand it fake /proc trees under tests/data. Every file a
// target names (its config files) is opened inside the target's own root (/proc/PID/root) with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so a symlink planted in a container can never make the agent read
// one of its own host files. Bad input (unreadable or malformed config, a process exiting mid-scan, hostile cmdlines,
// huge files) becomes a warning naming the PID and file; the other processes are still found.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/proc/pod_identity.h"
#include "core/model/process_book.h"

namespace sp {

// A process identity that survives PID reuse: the start time (field 22 of /proc/PID/stat, clock ticks since boot)
// differs when a PID is recycled.
struct ProcessKey {
  int pid = 0;
  std::uint64_t start_time = 0;
  auto operator<=>(const ProcessKey&) const = default;
};

struct WorkerInfo {
  ProcessKey key;
  int host_pid = 0;                 // PID in the agent's namespace (== key.pid unless proc_root is another namespace's)
  std::vector<int> ns_pids;         // NSpid: line of /proc/PID/status, outermost first
  std::string worker_name;          // worker_name, else worker_app, else "master"; --worker-name overrides
  std::string name_source;          // "worker_name", "worker_app", "supervisor", "cli", "default"
  std::string worker_app;           // e.g. "synapse.app.generic_worker", "synapse.app.homeserver"
  bool is_main = false;             // the main process (synapse.app.homeserver / synapse_homeserver)
  std::vector<std::string> cmdline;
  std::vector<std::string> config_files;  // files loaded (read and parsed), as resolved inside the target's root,
                                          // in load order; skipped or broken ones appear in `warnings` instead
  std::optional<std::string> metrics_url; // http://127.0.0.1:PORT/_synapse/metrics (needs enable_metrics: true)
  bool metrics_port_confirmed = false;    // the PID owns a listening socket on that port (never set for a URL
                                          // from DiscoveryOptions::metrics_urls, which is not checked)
  std::string python_path;          // Python executable or libpython mapped by the process (path inside its root)
  std::string libpq_path;           // libpq mapped by the process (path inside its root), empty if none yet
  std::optional<PodIdentity> pod;   // set when /proc/PID/cgroup is a Kubernetes pod's (node-wide mode)
  std::vector<std::string> warnings;  // "pid N: ..." problems of this process
};

// The labels every series of this worker carries: worker, worker_app and, in a pod, pod/namespace/container.
WorkerLabels labels_of(const WorkerInfo& w);

struct PostgresProcess {
  ProcessKey key;
  int ppid = 0;
  bool postmaster = false;          // the cluster's main process (its parent is not a postgres process)
  std::string exe_path;             // the postgres binary (path inside its root)
  std::string role;                 // for backends: the process title after "postgres: " (e.g. "synapse synapse 127.0.0.1(5432) idle")
};

struct DiscoveryOptions {
  std::string proc_root = "/proc";
  std::vector<int> pids;                             // non-empty: only these PIDs are considered (no cmdline filter)
  std::optional<std::string> worker_name;            // with exactly one target: its name
  std::map<std::string, std::string> metrics_urls;   // worker name -> URL, overrides what the config says
  std::size_t max_file_bytes = 4 << 20;              // cap for any single config or /proc file read
  PodLogDirs pod_log_dirs;                           // where the kubelet's log directories name pods and containers
  bool log_warnings = false;                         // also log each warning; off by default because callers
                                                     // report them (a rescan loop only DiscoveryState's
                                                     // new_warnings, so problems are not repeated every scan)
};

struct ScanResult {
  std::vector<WorkerInfo> workers;         // sorted by worker name, then PID
  std::vector<PostgresProcess> postgres;   // sorted by PID
  std::vector<std::string> warnings;       // every problem of the scan ("pid 123: config /x.yaml: ..."): the
                                           // scan-level ones plus a copy of each worker's own warnings
};

// One full scan of proc_root. Never throws; problems end up in the warnings.
//
// Targets: without options.pids, every process whose cmdline is Synapse (see synapse_app_from_cmdline). With
// options.pids, exactly those PIDs, whatever their cmdline: the user said so, and wrappers we do not recognise
// (twistd, custom launchers) must stay profilable. PostgreSQL processes are always looked for in all of proc_root,
// because the backends serving a pinned worker are not pinned themselves.
//
// Worker names, first match wins: options.worker_name (only when there is exactly one target), config
// `worker_name`, config `worker_app`, SUPERVISOR_PROCESS_NAME from the environment (workers only: Docker's worker
// mode runs the main process as "synapse_main", but Synapse itself calls it "master"), "master" for the main
// process, the cmdline's app module for other Synapse workers, and "pid-N" (with a warning) for a pinned process that
// is neither recognised nor named.
ScanResult scan(const DiscoveryOptions& options);

// What a scan learnt about the workers that had fully started (metrics port confirmed as the process's own listening
// socket, libpq mapped), for the next scans to reuse: such a process (same PID, start time and command line) is not
// analysed again, which spares reading its environment, maps, configuration files, descriptors and its network
// namespace's TCP tables on every rescan (most of an idle agent's discovery work, issue 20). Synapse reads its
// configuration once at start, maps libpq before it serves, and keeps its listeners: nothing it was read for can
// change without a new process. A worker still starting (no metrics listener yet, no libpq) is analysed at every
// scan until it has. One scanning thread at a time.
struct ScanMemoEntries;
class ScanMemo {
 public:
  ScanMemo();
  ~ScanMemo();
  ScanMemo(const ScanMemo&) = delete;
  ScanMemo& operator=(const ScanMemo&) = delete;
  std::size_t size() const;  // workers remembered
  ScanMemoEntries& entries() { return *entries_; }  // opaque outside discovery.cpp

 private:
  std::unique_ptr<ScanMemoEntries> entries_;
};
ScanResult scan(const DiscoveryOptions& options, ScanMemo& memo);

// Whether the process `key` (as found under proc_root) still runs: false once it has exited (a zombie included) or
// its PID belongs to a newer process. Used to tell "exited between discovery and attach" from a real attach failure.
bool process_running(const std::string& proc_root, const ProcessKey& key);

// If `cmdline` is a Synapse process, returns its worker_app (the `-m synapse.app.X` module, or
// synapse.app.homeserver / synapse.app.generic_worker for the console scripts). Exposed for tests.
std::optional<std::string> synapse_app_from_cmdline(const std::vector<std::string>& cmdline);

// The Synapse config paths on a command line (`-c X`, `-cX`, `--config-path X`, `--config-path=X`), in order, as
// given (relative paths are not resolved). Only arguments after the interpreter's own options and the module/script
// count, so `python -c CODE` is never mistaken for a config. Exposed for tests.
std::vector<std::string> synapse_config_args(const std::vector<std::string>& cmdline);

// What changed between two scans. Processes are matched by ProcessKey, so a PID reused by a new process (different
// start time) is reported as removed and added.
struct ScanDiff {
  std::vector<WorkerInfo> added;
  std::vector<WorkerInfo> removed;
  std::vector<std::string> new_warnings;  // warnings of this scan that the previous scan did not have
};

// Remembers the last scan for periodic rescans.
class DiscoveryState {
 public:
  ScanDiff update(ScanResult result);
  const ScanResult& current() const { return current_; }

 private:
  ScanResult current_;
};

}  // namespace sp
