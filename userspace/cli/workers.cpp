// `workers`: one scan, printed for a person (default) or as JSON (--json).
#include <fmt/core.h>

#include <string>

#include "cli/commands.h"
#include "core/python/desc_planner.h"
#include "core/python/gc_planner.h"
#include "core/util/json.h"
#include "core/util/log.h"

namespace sp::cli {
namespace {

std::string json_string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += json_quote(items[i]);
  }
  return out + "]";
}

// How the GC probe would attach to each worker (the same planner the agent uses).
struct GcView {
  std::string method;  // empty: no method works
  std::string detail;  // the plan's detail, or why no method works
};

GcView gc_view(GcPlanner& planner, const WorkerInfo& w) {
  std::string error;
  auto plan = planner.plan(w, error);
  if (!plan) return {"", error};
  return {std::string(gc_method_name(plan->method)), plan->detail};
}

// Whether the libpq probe can attribute this worker's queries to Synapse transactions (the same planner the agent
// uses, including its check against the live process).
struct DescView {
  bool active = false;
  std::string detail;
};

DescView desc_view(DescPlanner& planner, const WorkerInfo& w) {
  std::string why_not;
  auto plan = planner.plan(w, why_not);
  return plan ? DescView{true, plan->detail} : DescView{false, why_not};
}

std::string pod_json(const WorkerInfo& w) {
  if (!w.pod) return "null";
  const PodIdentity& p = *w.pod;
  return fmt::format("{{\"pod_uid\": {}, \"container_id\": {}, \"namespace\": {}, \"pod\": {}, \"container\": {}}}",
                     json_quote(p.pod_uid), json_quote(p.container_id), json_quote(p.namespace_name),
                     json_quote(p.pod_name), json_quote(p.container_name));
}

std::string worker_json(const WorkerInfo& w, const GcView& gc, const DescView& desc) {
  std::string ns;
  for (std::size_t i = 0; i < w.ns_pids.size(); ++i) ns += (i ? ", " : "") + std::to_string(w.ns_pids[i]);
  return fmt::format(
      "  {{\"pid\": {}, \"worker\": {}, \"worker_app\": {}, \"name_source\": {}, \"main\": {}, \"config_files\": {}, "
      "\"metrics_url\": {}, \"metrics_port_confirmed\": {}, \"python\": {}, \"gc_method\": {}, \"gc_detail\": {}, "
      "\"libpq\": {}, \"desc_attribution\": {}, \"desc_detail\": {}, \"ns_pids\": [{}], \"pod\": {}, "
      "\"warnings\": {}}}",
      w.host_pid, json_quote(w.worker_name), json_quote(w.worker_app), json_quote(w.name_source),
      w.is_main ? "true" : "false", json_string_array(w.config_files),
      w.metrics_url ? json_quote(*w.metrics_url) : "null", w.metrics_port_confirmed ? "true" : "false",
      json_quote(w.python_path), gc.method.empty() ? "null" : json_quote(gc.method), json_quote(gc.detail),
      json_quote(w.libpq_path), desc.active ? "true" : "false", json_quote(desc.detail), ns,
      pod_json(w), json_string_array(w.warnings));
}

void print_text(const ScanResult& r, GcPlanner& planner, DescPlanner& desc_planner) {
  if (r.workers.empty()) {
    fmt::print("No Synapse processes found. Synapse runs as 'python -m synapse.app.homeserver|generic_worker -c ...'\n"
               "or as synapse_homeserver / synapse_worker; pin a process with --pid if it runs differently.\n");
  }
  for (const auto& w : r.workers) {
    fmt::print("{} (pid {}, {}{})\n", w.worker_name, w.host_pid, w.worker_app, w.is_main ? ", main process" : "");
    fmt::print("  name from:   {}\n", w.name_source);
    if (w.pod) {
      const PodLabels l = pod_labels(*w.pod);
      fmt::print("  pod:         namespace {} pod {} container {} (uid {}, container id {})\n",
                 l.namespace_name.empty() ? "(unknown)" : l.namespace_name, l.pod, l.container, w.pod->pod_uid,
                 w.pod->container_id);
    }
    fmt::print("  configs:     {}\n", w.config_files.empty() ? "(none)" : fmt::format("{}", w.config_files.front()));
    for (std::size_t i = 1; i < w.config_files.size(); ++i) fmt::print("               {}\n", w.config_files[i]);
    fmt::print("  metrics:     {}{}\n", w.metrics_url.value_or("(none: enable_metrics and a metrics listener needed)"),
               w.metrics_url && !w.metrics_port_confirmed ? " (port not seen listening by this process)" : "");
    fmt::print("  python:      {}\n", w.python_path.empty() ? "(unknown)" : w.python_path);
    GcView gc = gc_view(planner, w);
    fmt::print("  gc probe:    {}{}\n", gc.method.empty() ? "none: " : gc.method + " (", gc.method.empty() ? gc.detail : gc.detail + ")");
    fmt::print("  libpq:       {}\n", w.libpq_path.empty() ? "(not mapped yet)" : w.libpq_path);
    DescView desc = desc_view(desc_planner, w);
    fmt::print("  desc:        {}{}\n", desc.active ? "active: " : "off: ", desc.detail);
    for (const auto& warning : w.warnings) fmt::print("  warning:     {}\n", warning);
  }
  if (!r.postgres.empty()) {
    std::size_t postmasters = 0;
    for (const auto& p : r.postgres) postmasters += p.postmaster;
    fmt::print("PostgreSQL: {} cluster(s), {} process(es)\n", postmasters, r.postgres.size());
  }
}

}  // namespace

int run_workers(const CliOptions& options) {
  ScanResult r = scan(discovery_options(options));
  GcPlanner planner(options.proc_root);
  DescPlanner desc_planner(options.proc_root);
  for (const auto& w : r.warnings) log::warn("{}", w);
  if (options.json) {
    fmt::print("[");
    for (std::size_t i = 0; i < r.workers.size(); ++i) fmt::print("{}\n{}", i ? "," : "", worker_json(r.workers[i], gc_view(planner, r.workers[i]),
                                                                    desc_view(desc_planner, r.workers[i])));
    fmt::print("{}]\n", r.workers.empty() ? "" : "\n");
  } else {
    print_text(r, planner, desc_planner);
  }
  return 0;
}

}  // namespace sp::cli
