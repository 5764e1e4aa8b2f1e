#include "core/proc/discovery.h"

#include "core/util/fd.h"
#include "core/util/log.h"
#include "core/proc/proc_parse.h"
#include "core/util/safe_file.h"
#include "core/proc/synapse_config.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <exception>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>

namespace sp {
namespace {

constexpr std::string_view kAppPrefix = "synapse.app.";
constexpr std::string_view kMainApp = "synapse.app.homeserver";
constexpr std::string_view kGenericWorkerApp = "synapse.app.generic_worker";

// Modules under synapse.app that run a long-lived Synapse process: the main process, the generic worker and the
// older per-role worker names Synapse still accepts. Everything else there (_base, admin_cmd, ...) is a library or a
// one-shot tool.
constexpr std::array<std::string_view, 12> kAppModules = {
    "homeserver",        "generic_worker", "appservice", "client_reader", "event_creator", "federation_reader",
    "federation_sender", "frontend_proxy", "media_repository", "pusher", "synchrotron", "user_dir"};

// A Synapse command line: which app it runs, and where the arguments Synapse itself parses begin.
struct SynapseCommand {
  std::string app;
  std::size_t args_begin = 0;
};

bool is_python_executable(std::string_view name) {
  constexpr std::string_view kPython = "python";
  if (!name.starts_with(kPython)) return false;
  name.remove_prefix(kPython.size());
  return std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

std::optional<std::string> app_from_module(std::string_view module) {
  if (!module.starts_with(kAppPrefix)) return std::nullopt;
  const auto name = module.substr(kAppPrefix.size());
  if (std::find(kAppModules.begin(), kAppModules.end(), name) == kAppModules.end()) return std::nullopt;
  return std::string(module);
}

std::optional<std::string> app_from_script(std::string_view path) {
  const auto name = proc::basename(path);
  if (name == "synapse_homeserver") return std::string(kMainApp);
  if (name == "synapse_worker") return std::string(kGenericWorkerApp);
  return std::nullopt;
}

std::optional<SynapseCommand> classify_cmdline(const std::vector<std::string>& args) {
  if (args.empty()) return std::nullopt;
  if (auto app = app_from_script(args[0])) return SynapseCommand{std::move(*app), 1};
  if (!is_python_executable(proc::basename(args[0]))) return std::nullopt;
  // Walk CPython's own options up to `-m MODULE` or the script path.
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      if (i + 1 >= args.size()) return std::nullopt;
      auto app = app_from_script(args[i + 1]);
      if (!app) return std::nullopt;
      return SynapseCommand{std::move(*app), i + 2};
    }
    if (arg.size() < 2 || arg[0] != '-') {  // the script ("-" alone is stdin)
      auto app = app_from_script(arg);
      if (!app) return std::nullopt;
      return SynapseCommand{std::move(*app), i + 1};
    }
    if (arg[1] == '-') {
      if (arg == "--check-hash-based-pycs") ++i;  // the only long option with a separate value
      continue;
    }
    // A cluster of short options ("-u", "-uB", "-Xdev", "-m" MODULE, "-mMODULE"). Options with a value take the rest
    // of the cluster, or the next argument.
    for (std::size_t j = 1; j < arg.size(); ++j) {
      const char option = arg[j];
      if (option != 'm' && option != 'c' && option != 'X' && option != 'W') continue;
      std::string_view value;
      std::size_t next = i + 1;
      if (j + 1 < arg.size()) {
        value = std::string_view(arg).substr(j + 1);
      } else if (i + 1 < args.size()) {
        value = args[i + 1];
        next = i + 2;
      } else {
        return std::nullopt;
      }
      if (option == 'c') return std::nullopt;  // `python -c CODE` is not Synapse, whatever CODE imports
      if (option == 'm') {
        auto app = app_from_module(value);
        if (!app) return std::nullopt;
        return SynapseCommand{std::move(*app), next};
      }
      i = next - 1;
      break;
    }
  }
  return std::nullopt;
}

std::vector<std::string> config_args_from(const std::vector<std::string>& args, std::size_t begin) {
  constexpr std::string_view kLong = "--config-path";
  std::vector<std::string> paths;
  for (std::size_t i = begin; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "-c" || arg == kLong) {
      if (i + 1 < args.size()) paths.push_back(args[++i]);
    } else if (arg.starts_with(kLong) && arg.size() > kLong.size() && arg[kLong.size()] == '=') {
      paths.emplace_back(arg.substr(kLong.size() + 1));
    } else if (arg.size() > 2 && arg.starts_with("-c")) {
      paths.emplace_back(arg.substr(2));
    }
  }
  return paths;
}

// cwd + relative path. "." components and repeated slashes are dropped (they never change what the kernel
// resolves); ".." is kept because through a symlink it can.
std::string join_path(std::string_view cwd, std::string_view path) {
  std::string joined(cwd);
  joined += '/';
  joined += path;
  std::string out;
  std::size_t i = 0;
  while (i < joined.size()) {
    const std::size_t end = std::min(joined.find('/', i), joined.size());
    const std::string_view part = std::string_view(joined).substr(i, end - i);
    // ".." at the root is the root, so a leading run of them can be dropped without changing the meaning.
    if (!part.empty() && part != "." && !(part == ".." && out.empty())) {
      out += '/';
      out += part;
    }
    i = end + 1;
  }
  if (out.empty()) out = "/";
  if (path.ends_with('/') && out != "/") out += '/';
  return out;
}

bool is_libpython(std::string_view name) {
  return name.starts_with("libpython3.") && name.find(".so") != std::string_view::npos;
}

// libpq.so.5[.x] from a distribution, or the libpq-<hash>.so.5.x that psycopg2-binary bundles.
bool is_libpq(std::string_view name) {
  return name.starts_with("libpq.so.5") || (name.starts_with("libpq-") && name.find(".so") != std::string_view::npos);
}

bool is_postgres(const std::vector<std::string>& args, std::string_view exe) {
  if (proc::basename(exe) == "postgres") return true;
  if (args.empty()) return false;
  // A backend's title ("postgres: synapse synapse 127.0.0.1(5432) idle") may itself contain '/'.
  return args[0].starts_with("postgres:") || proc::basename(args[0]) == "postgres";
}

// The process title after "postgres: ". PostgreSQL writes titles over argv, with spaces rather than NULs and often
// padding at the end.
std::string postgres_role(const std::vector<std::string>& args) {
  std::string title;
  for (const auto& arg : args) {
    if (!title.empty()) title += ' ';
    title += arg;
  }
  constexpr std::string_view kPrefix = "postgres: ";
  if (!title.starts_with(kPrefix)) return {};
  title.erase(0, kPrefix.size());
  const std::size_t end = title.find_last_not_of(std::string_view(" \t\0", 3));
  title.erase(end == std::string::npos ? 0 : end + 1);
  return title;
}

// Thrown while looking at one process when it turns out to have exited; scan() skips that process quietly.
struct ProcessGone {};

// The files of one /proc/PID directory.
class ProcessFiles {
 public:
  ProcessFiles(const std::string& proc_root, int pid, std::size_t max_bytes)
      : dir_(proc_root + "/" + std::to_string(pid)), max_bytes_(max_bytes) {}

  std::string path(std::string_view name) const { return dir_ + "/" + std::string(name); }

  // Throws ProcessGone when `error` means the process exited: ESRCH, or ENOENT with the PID directory gone (ENOENT
  // alone is ambiguous: net/tcp6 is missing without IPv6, a zombie has no cwd).
  void check_gone(int error) const {
    struct stat st {};
    if (error == ESRCH || (error == ENOENT && ::stat(dir_.c_str(), &st) != 0 && errno == ENOENT)) throw ProcessGone{};
  }

  // Contents of /proc/PID/NAME, truncated at the cap (a /proc file's head is what we need). nullopt + error when it
  // cannot be read.
  std::optional<std::string> read(std::string_view name, int& error) const {
    ReadResult result = read_file(path(name), max_bytes_);
    error = result.error;
    if (error != 0) {
      check_gone(error);
      return std::nullopt;
    }
    return std::move(result.data);
  }

  std::optional<std::string> readlink(std::string_view name, int& error) const {
    std::string target;
    error = read_link(path(name), target);
    if (error != 0) {
      check_gone(error);
      return std::nullopt;
    }
    return target;
  }

 private:
  std::string dir_;
  std::size_t max_bytes_;
};

// Collects warnings of one process, prefixed with its PID.
class Reporter {
 public:
  Reporter(int pid, std::vector<std::string>& sink) : pid_(pid), sink_(sink) {}
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    sink_.push_back(fmt::format("pid {}: {}", pid_, fmt::format(format, std::forward<Args>(args)...)));
  }

 private:
  int pid_;
  std::vector<std::string>& sink_;
};

// Reads the config files a target names, inside its own root, into a SynapseConfig.
class ConfigLoader {
 public:
  ConfigLoader(const ProcessFiles& files, const Reporter& reporter, std::size_t max_bytes, SynapseConfig& config,
               std::vector<std::string>& loaded)
      : files_(files), reporter_(reporter), max_bytes_(max_bytes), config_(config), loaded_(loaded) {}

  void load(const std::vector<std::string>& paths) {
    if (paths.empty()) return;
    int error = 0;
    // One O_PATH handle on the target's root for every lookup: all of its config files resolve against the same
    // root even if the process exits or changes root meanwhile.
    root_ = open_file(files_.path("root"), O_PATH | O_DIRECTORY, error);
    if (!root_.valid()) {
      files_.check_gone(error);
      reporter_.warn("{}: {} (config files not read)", files_.path("root"), errno_text(error));
      return;
    }
    for (const auto& path : paths) {
      if (path.empty()) continue;
      if (path.front() == '/') {
        load_path(path);
      } else if (const auto cwd = target_cwd()) {
        load_path(join_path(*cwd, path));
      }
    }
  }

 private:
  // The target's working directory, a path inside its root; read once, only if a relative path needs it.
  std::optional<std::string> target_cwd() {
    if (!cwd_read_) {
      cwd_read_ = true;
      int error = 0;
      cwd_ = files_.readlink("cwd", error);
      if (!cwd_) {
        reporter_.warn("{}: {} (relative config paths not read)", files_.path("cwd"), errno_text(error));
      } else {
        *cwd_ = proc::strip_deleted(*cwd_);
      }
    }
    return cwd_;
  }

  // A file, or a directory whose *.yaml files are loaded in name order (Synapse's rule).
  void load_path(const std::string& path) {
    int error = 0;
    const Fd fd = open_in_root(root_.get(), path, error);
    if (!fd.valid()) {
      reporter_.warn("config {}: {}", path, errno_text(error));
      return;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      reporter_.warn("config {}: {}", path, errno_text(errno));
      return;
    }
    if (S_ISREG(st.st_mode)) {
      load_file(fd.get(), st, path);
      return;
    }
    if (!S_ISDIR(st.st_mode)) {
      reporter_.warn("config {}: not a regular file or directory", path);
      return;
    }
    std::vector<std::string> names = list_dir(fd.get(), error);
    if (error != 0) reporter_.warn("config {}: {}", path, errno_text(error));
    std::erase_if(names, [](const std::string& name) { return !name.ends_with(".yaml"); });
    std::sort(names.begin(), names.end());
    const std::string prefix = path.ends_with('/') ? path : path + "/";
    for (const auto& name : names) {
      // Reopened from the root, not the directory fd, so a symlinked entry resolves exactly as it would for Synapse
      // (and still cannot leave the root).
      const std::string child = prefix + name;
      const Fd child_fd = open_in_root(root_.get(), child, error);
      if (!child_fd.valid()) {
        reporter_.warn("config {}: {}", child, errno_text(error));
        continue;
      }
      struct stat child_st {};
      if (::fstat(child_fd.get(), &child_st) != 0 || !S_ISREG(child_st.st_mode)) {
        log::debug("config {}: not a regular file, skipped", child);
        continue;
      }
      load_file(child_fd.get(), child_st, child);
    }
  }

  void load_file(int fd, const struct stat& st, const std::string& path) {
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes_) {
      reporter_.warn("config {}: larger than {} bytes, skipped", path, max_bytes_);
      return;
    }
    const ReadResult content = read_fd(fd, max_bytes_);
    if (content.error != 0) {
      reporter_.warn("config {}: {}", path, errno_text(content.error));
      return;
    }
    if (content.too_big) {  // grew after fstat
      reporter_.warn("config {}: larger than {} bytes, skipped", path, max_bytes_);
      return;
    }
    std::string reason;
    if (!config_.merge_file(content.data, reason)) {
      reporter_.warn("config {}: {}", path, reason);
      return;
    }
    loaded_.push_back(path);
  }

  const ProcessFiles& files_;
  const Reporter& reporter_;
  std::size_t max_bytes_;
  SynapseConfig& config_;
  std::vector<std::string>& loaded_;
  Fd root_;
  bool cwd_read_ = false;
  std::optional<std::string> cwd_;
};

// A worker while the scan is running: what finalisation still needs besides the WorkerInfo.
struct Target {
  WorkerInfo info;
  bool metrics_enabled = false;
  std::vector<MetricsEndpoint> endpoints;
  std::set<int> listening_ports;  // TCP ports this PID owns a listening socket on
  std::string sockets_problem;    // why ownership could not be checked; empty if it could
};

void find_binaries(const std::vector<proc::Mapping>& maps, const std::string& exe, WorkerInfo& info) {
  std::string first_executable;
  for (const auto& mapping : maps) {
    if (!mapping.path.starts_with('/')) continue;  // anonymous, [heap], [vdso], ...
    const auto name = proc::basename(mapping.path);
    if (info.python_path.empty() && is_libpython(name)) info.python_path = mapping.path;
    if (info.libpq_path.empty() && is_libpq(name)) info.libpq_path = mapping.path;
    if (first_executable.empty() && mapping.perms.starts_with("r-x")) first_executable = mapping.path;
  }
  // A libpython means the interpreter (and its GC) lives there; otherwise it is linked into the executable.
  if (info.python_path.empty()) info.python_path = exe.empty() ? first_executable : exe;
}

// The listening TCP sockets of each network namespace, read once per scan. /proc/PID/net/tcp{,6} show the tables of
// the process's namespace, and reading one makes the kernel walk its whole established-connection hash (262 144
// buckets on a 2-core VM, however few connections there are): done for every worker on every rescan, that was 40 %
// of an idle agent's CPU with 4 workers (issue 20). Workers of one host or pod share a namespace, so they share one
// read. A process whose namespace link cannot be read (not root) gets a read of its own, as before.
class ListenerTables {
 public:
  // The listening sockets of the process's namespace; nullptr with `problem` when no table could be read. Valid
  // until the next call.
  const std::vector<proc::TcpSocket>* of(const ProcessFiles& files, std::string& problem) {
    int error = 0;
    const auto netns = files.readlink("ns/net", error);  // "net:[4026531840]"
    if (netns) {
      if (auto it = by_netns_.find(*netns); it != by_netns_.end()) return &it->second;
    }
    last_.clear();
    bool any_table = false;
    for (const char* table : {"net/tcp", "net/tcp6"}) {
      const auto text = files.read(table, error);
      // tcp6 is absent without IPv6. A table cut at the size cap still holds every listener: the kernel lists the
      // listening sockets before the established ones.
      if (!text) continue;
      any_table = true;
      for (const auto& socket : proc::parse_net_tcp(*text)) {
        if (socket.state == proc::kTcpListen) last_.push_back(socket);
      }
    }
    if (!any_table) {  // not kept: the next process of the namespace tries again and names its own file
      problem = fmt::format("{}: {}", files.path("net/tcp"), errno_text(error));
      return nullptr;
    }
    if (!netns) return &last_;
    return &by_netns_.emplace(*netns, std::move(last_)).first->second;
  }

 private:
  std::map<std::string, std::vector<proc::TcpSocket>> by_netns_;
  std::vector<proc::TcpSocket> last_;  // read for a process whose namespace is unknown
};

// Ports of LISTEN sockets owned by the process: socket inodes from fd/* matched against net/tcp and net/tcp6.
std::set<int> find_listening_ports(const ProcessFiles& files, ListenerTables& tables, std::string& problem) {
  std::set<int> ports;
  int error = 0;
  const Fd fd_dir = open_file(files.path("fd"), O_RDONLY | O_DIRECTORY, error);
  std::vector<std::string> fds;
  if (fd_dir.valid()) fds = list_dir(fd_dir.get(), error);
  if (error != 0) {
    files.check_gone(error);
    problem = fmt::format("{}: {}", files.path("fd"), errno_text(error));
    return ports;
  }
  std::set<std::uint64_t> inodes;
  for (const auto& fd : fds) {
    std::string target;
    // A descriptor closed since the listing is simply not a socket we own any more.
    if (read_link(files.path("fd/" + fd), target) != 0) continue;
    if (const auto inode = proc::socket_inode(target)) inodes.insert(*inode);
  }
  const auto* listeners = tables.of(files, problem);
  if (!listeners) return ports;
  for (const auto& socket : *listeners) {
    if (inodes.contains(socket.inode)) ports.insert(socket.local_port);
  }
  return ports;
}

Target analyze_worker(const DiscoveryOptions& options, ListenerTables& tables, int pid, const ProcessFiles& files,
                      const proc::Stat& stat, std::vector<std::string> args, const std::optional<SynapseCommand>& command,
                      const std::string& exe) {
  Target target;
  WorkerInfo& info = target.info;
  const Reporter reporter(pid, info.warnings);
  info.key = ProcessKey{pid, stat.start_time};
  info.host_pid = pid;
  info.is_main = command && command->app == kMainApp;
  int error = 0;

  if (const auto status = files.read("status", error)) {
    info.ns_pids = proc::parse_nspid(*status);
  } else {
    reporter.warn("{}: {}", files.path("status"), errno_text(error));
  }
  // No cgroup file (fixtures, kernels without cgroups) simply means no pod.
  if (const auto cgroup = files.read("cgroup", error)) info.pod = pod_from_cgroup_file(*cgroup);

  // A pinned process we do not recognise may still be Synapse behind a wrapper: read whatever -c it has.
  const auto config_paths = config_args_from(args, command ? command->args_begin : 1);
  SynapseConfig config;
  ConfigLoader(files, reporter, options.max_file_bytes, config, info.config_files).load(config_paths);

  const auto config_worker_app = config.string_value("worker_app");
  info.worker_app = config_worker_app ? *config_worker_app : command ? command->app : std::string();
  if (const auto name = config.string_value("worker_name")) {
    info.worker_name = *name;
    info.name_source = "worker_name";
  } else if (config_worker_app) {
    info.worker_name = *config_worker_app;
    info.name_source = "worker_app";
  } else {
    std::optional<std::string> supervisor;
    if (!info.is_main) {
      if (const auto environ = files.read("environ", error)) {
        supervisor = proc::environ_value(*environ, "SUPERVISOR_PROCESS_NAME");
      } else {
        reporter.warn("{}: {}", files.path("environ"), errno_text(error));
      }
    }
    if (supervisor && !supervisor->empty()) {
      info.worker_name = *supervisor;
      info.name_source = "supervisor";
    } else if (info.is_main) {
      info.worker_name = "master";  // Synapse's own instance name for the main process
      info.name_source = "default";
    } else if (command) {
      info.worker_name = command->app;
      info.name_source = "default";
    } else {
      info.worker_name = fmt::format("pid-{}", pid);
      info.name_source = "default";
      if (!options.worker_name) {
        reporter.warn("not recognised as Synapse and no worker name configured; named {} (use --worker-name)",
                      info.worker_name);
      }
    }
  }

  if (const auto maps = files.read("maps", error)) {
    find_binaries(proc::parse_maps(*maps), exe, info);
  } else {
    reporter.warn("{}: {}", files.path("maps"), errno_text(error));
    info.python_path = exe;
  }

  // Synapse's main process opens `listeners`, a worker only its `worker_listeners` (its merged config often
  // includes the main's homeserver.yaml, whose listeners are not its own).
  static const std::vector<std::string> kMainKeys{"listeners"};
  static const std::vector<std::string> kWorkerKeys{"worker_listeners"};
  static const std::vector<std::string> kUnknownKeys{"worker_listeners", "listeners"};
  const auto& keys = info.is_main ? kMainKeys : command ? kWorkerKeys : kUnknownKeys;
  std::vector<std::string> problems;
  target.endpoints = config.metrics_endpoints(keys, problems);
  for (const auto& problem : problems) reporter.warn("config: {}", problem);
  target.metrics_enabled = config.metrics_enabled();
  if (!target.endpoints.empty()) {
    if (target.metrics_enabled) {
      target.listening_ports = find_listening_ports(files, tables, target.sockets_problem);
    } else {
      reporter.warn("config: a metrics listener is configured but enable_metrics is not true (Synapse does not serve "
                    "metrics then)");
    }
  }
  info.cmdline = std::move(args);
  return target;
}

// Picks the metrics URL: the user's override, else the first configured endpoint whose port the PID listens on, else
// the first one (kept, with a warning: the socket may simply not be open yet).
void choose_metrics_url(const DiscoveryOptions& options, Target& target) {
  WorkerInfo& info = target.info;
  if (const auto it = options.metrics_urls.find(info.worker_name); it != options.metrics_urls.end()) {
    info.metrics_url = it->second;  // may point through a proxy or another namespace: ownership is not checked
    return;
  }
  if (!target.metrics_enabled || target.endpoints.empty()) return;
  const Reporter reporter(info.key.pid, info.warnings);
  for (const auto& endpoint : target.endpoints) {
    if (target.listening_ports.contains(endpoint.port)) {
      info.metrics_url = endpoint.url;
      info.metrics_port_confirmed = true;
      return;
    }
  }
  const MetricsEndpoint& first = target.endpoints.front();
  info.metrics_url = first.url;
  if (!target.sockets_problem.empty()) {
    reporter.warn("metrics port {} not confirmed: {}", first.port, target.sockets_problem);
  } else {
    reporter.warn("metrics port {} not confirmed: the process owns no listening socket on it", first.port);
  }
}

}  // namespace

// Targets by process, kept from one scan to the next (ScanMemo).
struct ScanMemoEntries {
  std::map<ProcessKey, Target> targets;
};

ScanMemo::ScanMemo() : entries_(std::make_unique<ScanMemoEntries>()) {}
ScanMemo::~ScanMemo() = default;
std::size_t ScanMemo::size() const { return entries_->targets.size(); }

namespace {

class Scanner {
 public:
  Scanner(const DiscoveryOptions& options, ScanMemoEntries* memo) : options_(options), memo_(memo) {}

  ScanResult run() {
    int error = 0;
    const Fd root = open_file(options_.proc_root, O_RDONLY | O_DIRECTORY, error);
    std::vector<std::string> names;
    if (root.valid()) names = list_dir(root.get(), error);
    if (error != 0) {
      result_.warnings.push_back(fmt::format("{}: {}", options_.proc_root, errno_text(error)));
    }
    const std::set<int> pinned(options_.pids.begin(), options_.pids.end());
    for (const auto& name : names) {
      const auto pid = proc::parse_u64(name);
      if (!pid || *pid == 0 || *pid > 0x7fffffff) continue;
      if (!pinned.contains(static_cast<int>(*pid))) guarded(static_cast<int>(*pid), false);
    }
    for (const int pid : pinned) guarded(pid, true);
    finish();
    return std::move(result_);
  }

 private:
  // Looks at one process; whatever happens stays with that process.
  void guarded(int pid, bool pinned) {
    try {
      examine(pid, pinned);
    } catch (const ProcessGone&) {
      if (pinned) {
        result_.warnings.push_back(fmt::format("pid {}: no such process under {}", pid, options_.proc_root));
      } else {
        log::debug("pid {}: exited during the scan", pid);
      }
    } catch (const std::exception& e) {
      result_.warnings.push_back(fmt::format("pid {}: unexpected error: {}", pid, e.what()));
    } catch (...) {
      result_.warnings.push_back(fmt::format("pid {}: unexpected error", pid));
    }
  }

  void examine(int pid, bool pinned) {
    const ProcessFiles files(options_.proc_root, pid, options_.max_file_bytes);
    const Reporter reporter(pid, result_.warnings);
    int error = 0;
    const auto raw_cmdline = files.read("cmdline", error);
    if (!raw_cmdline) {
      // Unreadable cmdlines of unrelated processes are not our business; only a pinned PID deserves a warning.
      if (pinned) reporter.warn("{}: {}", files.path("cmdline"), errno_text(error));
      return;
    }
    std::vector<std::string> args = proc::split_cmdline(*raw_cmdline);
    if (args.empty() && !pinned) return;  // kernel thread or zombie
    std::string exe;
    if (const auto link = files.readlink("exe", error)) exe = proc::strip_deleted(*link);  // EACCES when not root
    const auto command = classify_cmdline(args);
    // With pinned PIDs the walk over the others only looks for PostgreSQL.
    const bool target = pinned || (command && options_.pids.empty());
    const bool postgres = !pinned && is_postgres(args, exe);
    if (!target && !postgres) return;

    const auto stat_text = files.read("stat", error);
    const auto stat = stat_text ? proc::parse_stat(*stat_text) : std::nullopt;
    if (!stat) {
      reporter.warn("{}: {}", files.path("stat"), stat_text ? "unparsable" : errno_text(error));
      return;
    }
    if (postgres) {
      PostgresProcess process;
      process.key = ProcessKey{pid, stat->start_time};
      process.ppid = stat->ppid;
      process.exe_path = !exe.empty() ? exe : args[0].starts_with('/') ? args[0] : std::string();
      process.role = postgres_role(args);
      result_.postgres.push_back(std::move(process));
      return;
    }
    if (memo_) {
      const auto it = memo_->targets.find(ProcessKey{pid, stat->start_time});
      if (it != memo_->targets.end() && it->second.info.cmdline == args) {
        targets_.push_back(it->second);
        return;
      }
    }
    targets_.push_back(analyze_worker(options_, tables_, pid, files, *stat, std::move(args), command, exe));
  }

  void finish() {
    auto& postgres = result_.postgres;
    std::sort(postgres.begin(), postgres.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    std::map<int, const PostgresProcess*> by_pid;
    for (const auto& process : postgres) by_pid[process.key.pid] = &process;
    for (auto& process : postgres) {
      const auto parent = by_pid.find(process.ppid);
      process.postmaster = parent == by_pid.end();
      // Backends are forked from the postmaster: same binary, even where their exe link is not readable.
      if (!process.postmaster && process.exe_path.empty()) process.exe_path = parent->second->exe_path;
    }

    if (options_.worker_name) {
      if (targets_.size() == 1) {
        targets_.front().info.worker_name = *options_.worker_name;
        targets_.front().info.name_source = "cli";
      } else {
        result_.warnings.push_back(fmt::format("worker name {} ignored: it applies to exactly one process, found {}",
                                               *options_.worker_name, targets_.size()));
      }
    }
    std::optional<PodNameIndex> pod_names;  // listed only when some worker runs in a pod
    for (auto& target : targets_) {
      if (!target.info.pod) continue;
      if (!pod_names) pod_names = PodNameIndex::load(options_.pod_log_dirs);
      pod_names->resolve(*target.info.pod);
    }
    std::map<ProcessKey, Target> remembered;  // only what still runs: the memo never outgrows the host's workers
    for (auto& target : targets_) {
      choose_metrics_url(options_, target);
      if (memo_ && target.info.metrics_port_confirmed && !target.info.libpq_path.empty()) {
        remembered.emplace(target.info.key, target);
      }
      result_.workers.push_back(std::move(target.info));
    }
    if (memo_) memo_->targets = std::move(remembered);
    auto& workers = result_.workers;
    std::sort(workers.begin(), workers.end(), [](const WorkerInfo& a, const WorkerInfo& b) {
      return std::tie(a.worker_name, a.key) < std::tie(b.worker_name, b.key);
    });
    for (const auto& worker : workers) {
      result_.warnings.insert(result_.warnings.end(), worker.warnings.begin(), worker.warnings.end());
    }
    if (options_.log_warnings) {
      for (const auto& warning : result_.warnings) log::warn("discovery: {}", warning);
    }
  }

  const DiscoveryOptions& options_;
  ScanMemoEntries* memo_;  // nullptr: every process analysed afresh
  ScanResult result_;
  std::vector<Target> targets_;
  ListenerTables tables_;  // this scan's
};

}  // namespace

std::optional<std::string> synapse_app_from_cmdline(const std::vector<std::string>& cmdline) {
  auto command = classify_cmdline(cmdline);
  if (!command) return std::nullopt;
  return std::move(command->app);
}

std::vector<std::string> synapse_config_args(const std::vector<std::string>& cmdline) {
  const auto command = classify_cmdline(cmdline);
  return config_args_from(cmdline, command ? command->args_begin : 1);
}

WorkerLabels labels_of(const WorkerInfo& w) {
  WorkerLabels labels{w.worker_name, w.worker_app};
  if (w.pod) labels.pod = pod_labels(*w.pod);
  return labels;
}

namespace {
ScanResult scan_with(const DiscoveryOptions& options, ScanMemoEntries* memo) {
  try {
    return Scanner(options, memo).run();
  } catch (const std::exception& e) {  // only allocation failures can get here; a scan must not take the agent down
    ScanResult result;
    result.warnings.push_back(fmt::format("discovery failed: {}", e.what()));
    return result;
  } catch (...) {
    ScanResult result;
    result.warnings.push_back("discovery failed");
    return result;
  }
}
}  // namespace

ScanResult scan(const DiscoveryOptions& options) { return scan_with(options, nullptr); }

ScanResult scan(const DiscoveryOptions& options, ScanMemo& memo) { return scan_with(options, &memo.entries()); }

bool process_running(const std::string& proc_root, const ProcessKey& key) {
  const ReadResult text = read_file(fmt::format("{}/{}/stat", proc_root, key.pid), 4096);
  if (text.error != 0) return false;
  const auto stat = proc::parse_stat(text.data);
  if (!stat || stat->start_time != key.start_time || stat->state == 'Z' || stat->state == 'X') return false;
  // Field 9, the task flags: PF_EXITING (0x4) is set as soon as the exit starts, well before it is a zombie (its
  // root and memory are released in between, which is what makes an attach fail).
  std::istringstream rest(text.data.substr(text.data.rfind(')') + 1));
  std::string field;
  std::uint64_t flags = 0;
  for (int i = 3; i <= 9 && rest >> field; ++i) {
    if (i == 9) flags = proc::parse_u64(field).value_or(0);
  }
  return (flags & 0x4) == 0;
}

ScanDiff DiscoveryState::update(ScanResult result) {
  ScanDiff diff;
  std::set<ProcessKey> before;
  std::set<ProcessKey> after;
  for (const auto& worker : current_.workers) before.insert(worker.key);
  for (const auto& worker : result.workers) after.insert(worker.key);
  for (const auto& worker : result.workers) {
    if (!before.contains(worker.key)) diff.added.push_back(worker);
  }
  for (const auto& worker : current_.workers) {
    if (!after.contains(worker.key)) diff.removed.push_back(worker);
  }
  const std::set<std::string> old_warnings(current_.warnings.begin(), current_.warnings.end());
  for (const auto& warning : result.warnings) {
    if (!old_warnings.contains(warning)) diff.new_warnings.push_back(warning);
  }
  current_ = std::move(result);
  return diff;
}

}  // namespace sp
