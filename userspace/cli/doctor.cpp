// `doctor`: one line per check, "ok"/"FAIL"/"warn", each failure with what to do about it. Exit status 0 only when
// every check the agent needs passes; "warn" lines (optional features) do not change the status.
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <string>

#include "probes/features.h"
#include "probes/libbpf_setup.h"
#include "cli/commands.h"
#include "cli/family_registry.h"
#include "core/proc/capabilities.h"
#include "core/correlate/correlator.h"
#include "core/python/desc_planner.h"
#include "core/python/elf_file.h"
#include "core/python/gc_planner.h"
#include "core/util/safe_file.h"
#include "core/util/log.h"
#include "core/proc/pid_namespace.h"
#include "core/scrape/scraper.h"

namespace sp::cli {
namespace {

enum class Verdict { Ok, Warn, Fail };

class Report {
 public:
  void line(Verdict v, const std::string& what, const std::string& detail = {}) {
    const char* tag = v == Verdict::Ok ? "ok  " : v == Verdict::Warn ? "warn" : "FAIL";
    fmt::print("[{}] {}{}{}\n", tag, what, detail.empty() ? "" : ": ", detail);
    if (v == Verdict::Fail) failed_ = true;
  }
  bool failed() const { return failed_; }

 private:
  bool failed_ = false;
};

void check_privileges(Report& r) {
  auto caps = own_effective_caps();
  if (!caps) {
    r.line(Verdict::Fail, "capabilities", "cannot read /proc/self/status");
    return;
  }
  struct Need {
    Cap cap;
    const char* why;
  };
  const Need needs[] = {
      {Cap::Bpf, "load BPF programs and maps"},
      {Cap::Perfmon, "attach tracepoints and read kernel memory from BPF"},
      {Cap::SysAdmin, "attach uprobes and USDT probes (GC and libpq probes) on this kernel"},
      {Cap::SysPtrace, "read /proc/PID/root and maps of processes in other containers or of other users"},
  };
  const bool sys_admin = has_cap(*caps, Cap::SysAdmin);
  for (const auto& n : needs) {
    // The kernel's bpf_capable() and perfmon_capable() accept CAP_SYS_ADMIN too, which uprobes need anyway here: with
    // it, CAP_BPF and CAP_PERFMON add nothing (the manifests grant only CAP_SYS_ADMIN and CAP_SYS_PTRACE).
    const bool implied = sys_admin && (n.cap == Cap::Bpf || n.cap == Cap::Perfmon);
    if (implied && !has_cap(*caps, n.cap)) {
      r.line(Verdict::Ok, fmt::format("{} ({})", cap_name(n.cap), n.why), "implied by CAP_SYS_ADMIN");
      continue;
    }
    bool has = has_cap(*caps, n.cap);
    r.line(has ? Verdict::Ok : Verdict::Fail, fmt::format("{} ({})", cap_name(n.cap), n.why),
           has ? "" : "missing: run as root, or grant it (systemd AmbientCapabilities=, Kubernetes securityContext)");
  }
  // Not needed for workers running as our own user; needed for a worker of another user whose config is private
  // (Synapse's image runs as uid 991): its /proc/PID/fd (metrics port check) and environ are private to it as well.
  const bool dac = has_cap(*caps, Cap::DacReadSearch);
  r.line(dac ? Verdict::Ok : Verdict::Warn,
         "CAP_DAC_READ_SEARCH (read config files, /proc/PID/fd and environ private to another user's worker)",
         dac ? "" : "missing: such workers are not named from their config and their metrics port is not confirmed");
}

void check_kernel(Report& r) {
  bool btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  r.line(btf ? Verdict::Ok : Verdict::Fail, "kernel BTF /sys/kernel/btf/vmlinux",
         btf ? "" : "missing: a kernel built with CONFIG_DEBUG_INFO_BTF=y is required (CO-RE)");

  struct statfs fs {};
  bool tracefs = statfs("/sys/kernel/tracing", &fs) == 0 && fs.f_type == 0x74726163;  // TRACEFS_MAGIC
  r.line(tracefs ? Verdict::Ok : Verdict::Warn, "tracefs at /sys/kernel/tracing",
         tracefs ? "" : "not mounted; not needed (probes use tp_btf/raw_tp and the uprobe PMU), but useful for "
                        "debugging: mount -t tracefs nodev /sys/kernel/tracing");

  for (const auto& h : bpf::check_all_hooks()) {
    r.line(h.ok ? Verdict::Ok : Verdict::Fail, "BPF hook " + h.hook, h.detail);
  }
}

// Every registered probe family loaded the way `run` loads it (system-wide hooks attached too): the verifier's and
// the kernel's real answer. Attaching to each process is checked per worker below.
void check_families(Report& r, const CliOptions& o) {
  for (const auto& f : make_probe_families(o, /*keep_fingerprints=*/false)) {
    std::string why;
    const bool ok = f->start(why);
    const std::string what = fmt::format("probe family {} loads", f->name());
    if (ok) {
      r.line(Verdict::Ok, what, "");
    } else if (f->optional()) {
      r.line(Verdict::Warn, what, why + "; optional: every other family works without it, only its own series stay silent");
    } else {
      r.line(Verdict::Fail, what, why);
    }
  }
}

// The server-side probes need PostgreSQL's USDT probes (postgres built with --enable-dtrace).
void check_postgres(Report& r, const std::string& proc_root, const PostgresProcess& p) {
  std::string who = fmt::format("PostgreSQL (postmaster pid {}) {}", p.key.pid, p.exe_path);
  int err = 0;
  Fd root = open_file(fmt::format("{}/{}/root", proc_root, p.key.pid), O_PATH | O_DIRECTORY, err);
  Fd bin = root.valid() ? open_in_root(root.get(), p.exe_path, err) : Fd();
  std::string error;
  auto elf = bin.valid() ? ElfFile::from_fd(bin.get(), error) : std::nullopt;
  if (!elf) {
    r.line(Verdict::Warn, who, bin.valid() ? error : "cannot open: " + errno_text(err));
  } else if (elf->has_usdt("postgresql", "query__start")) {
    r.line(Verdict::Ok, who + ": USDT probes (server-side query, lock and transaction metrics)");
  } else {
    r.line(Verdict::Warn, who + ": no USDT probes",
           "built without --enable-dtrace: server-side metrics unavailable, client-side (libpq) ones still work");
  }
}

// One scrape of the worker's own endpoint: whether the correlation series that need Synapse's counters will exist.
void check_synapse_metrics(Report& r, const WorkerInfo& w, const std::string& who) {
  ScrapeResult s = scrape_target({w.worker_name, w.worker_app, *w.metrics_url}, ScrapeOptions{});
  if (!s.up) {
    r.line(Verdict::Warn, who + ": Synapse metrics scrape",
           s.error + " (pass-through series, db_python_overhead_seconds_total and gc_coverage_ratio need it)");
    return;
  }
  r.line(Verdict::Ok, who + ": Synapse metrics scrape",
         fmt::format("{} families in {:.0f} ms", s.families->size(), s.duration_seconds * 1000));
  SynapseCounters c = synapse_counters(*s.families);
  r.line(c.gc_time_sum ? Verdict::Ok : Verdict::Warn, who + ": python_gc_time for gc_coverage_ratio",
         c.gc_time_sum ? fmt::format("Synapse has timed {:.3f} s of GC; the ratio compares the probes' pauses with "
                                     "its increase (below 0.9: the GC probe above is not attached or loses events; "
                                     "above 1: collections Synapse does not time)",
                                     *c.gc_time_sum)
                       : std::string("not exported (yet): Synapse exports it after its first collection; without it "
                                     "no gc_coverage_ratio for this worker"));
  r.line(c.query_time_sum ? Verdict::Ok : Verdict::Warn, who + ": synapse_storage_query_time for python overhead",
         c.query_time_sum ? fmt::format("{:.3f} s of query time so far", *c.query_time_sum)
                          : std::string("not exported (yet): it appears with the first database query; without it "
                                        "no db_python_overhead_seconds_total for this worker"));
}

void check_process(Report& r, GcPlanner& planner, const WorkerInfo& w) {
  std::string who = fmt::format("worker {} (pid {})", w.worker_name, w.host_pid);
  r.line(w.metrics_url && w.metrics_port_confirmed ? Verdict::Ok : Verdict::Warn, who + ": Synapse metrics endpoint",
         !w.metrics_url ? "none: set enable_metrics: true and add a listener of type metrics, or pass --metrics-url"
         : !w.metrics_port_confirmed ? *w.metrics_url + " is not seen listening in this process"
                                     : *w.metrics_url);

  std::string error;
  if (auto plan = planner.plan(w, error)) {
    r.line(Verdict::Ok, fmt::format("{}: GC probe by {}", who, gc_method_name(plan->method)),
           plan->detail + (plan->sees_automatic_collections
                               ? ""
                               : "; sees gc.collect() calls (how Synapse collects), not automatic collections"));
  } else {
    r.line(Verdict::Fail, who + ": no way to probe Python GC", error);
  }
  r.line(w.libpq_path.empty() ? Verdict::Warn : Verdict::Ok, who + ": libpq mapped",
         w.libpq_path.empty() ? "not yet (it is loaded on the first database connection)" : w.libpq_path);
  std::string why_not;
  auto desc = DescPlanner(planner.proc_root()).plan(w, why_not);
  r.line(desc ? Verdict::Ok : Verdict::Warn, who + ": queries per Synapse transaction (desc)",
         desc ? desc->detail : why_not + "; its queries count as desc=\"unattributed\"");
  if (w.metrics_url) check_synapse_metrics(r, w, who);
}

// The ids BPF reports must be the ones /proc shows (see core/proc/pid_namespace.h).
void check_pid_namespace(Report& r, const std::string& proc_root) {
  std::string error;
  auto ns = own_pid_ns_filter(error);
  if (!ns) {
    r.line(Verdict::Warn, "PID namespace", error);
  } else if (auto mismatch = proc_root_pid_ns_mismatch(proc_root); !mismatch.empty()) {
    r.line(Verdict::Fail, "PID namespace: " + proc_root + " is another namespace's", mismatch);
  } else {
    r.line(Verdict::Ok,
           ns->initial() ? "PID namespace: the host's" : "PID namespace: a container's (BPF translates ids)");
  }
}

}  // namespace

int run_doctor(const CliOptions& options) {
  bpf::init_libbpf(options.verbose);
  Report r;
  check_privileges(r);
  check_kernel(r);
  check_families(r, options);
  check_pid_namespace(r, options.proc_root);
  ScanResult scan_result = scan(discovery_options(options));
  for (const auto& w : scan_result.warnings) r.line(Verdict::Warn, "discovery", w);
  r.line(scan_result.workers.empty() ? Verdict::Warn : Verdict::Ok,
         fmt::format("Synapse processes found: {}", scan_result.workers.size()),
         scan_result.workers.empty() ? "start Synapse or pin processes with --pid" : "");
  GcPlanner planner(options.proc_root);
  for (const auto& w : scan_result.workers) check_process(r, planner, w);
  for (const auto& p : scan_result.postgres) {
    if (p.postmaster) check_postgres(r, options.proc_root, p);
  }
  fmt::print("{}\n", r.failed() ? "Some needed checks failed." : "All needed checks passed.");
  return r.failed() ? 1 : 0;
}

}  // namespace sp::cli
