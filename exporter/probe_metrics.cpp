#include "exporter/probe_metrics.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

#include "exporter/metric_builders.h"

namespace sp::exporter {
namespace {

template <typename Bounds>
std::vector<double> seconds(const Bounds& ns_bounds) {
  std::vector<double> b;
  for (auto ns : ns_bounds) b.push_back(static_cast<double>(ns) / 1e9);
  return b;
}

const std::vector<double>& latency_bounds_seconds() {
  static const std::vector<double> bounds = seconds(kLatencyBoundsNs);
  return bounds;
}

const std::vector<double>& io_bounds_seconds() {
  static const std::vector<double> bounds = seconds(kIoBoundsNs);
  return bounds;
}

const std::vector<double>& tick_bounds_seconds() {
  static const std::vector<double> bounds = seconds(kTickBoundsNs);
  return bounds;
}

// A kernel-bucketed histogram as a Prometheus histogram point with exactly the kernel's bounds.
prometheus::ClientMetric bucket_point(const LabelList& labels, const LatencyHistogram& h) {
  std::vector<std::uint64_t> per_bucket(h.buckets.begin(), h.buckets.end());
  return histogram_point(labels, latency_bounds_seconds(), per_bucket, static_cast<double>(h.sum_ns) / 1e9);
}

prometheus::ClientMetric bucket_point(const LabelList& labels, const IoHistogram& h) {
  std::vector<std::uint64_t> per_bucket(h.buckets.begin(), h.buckets.end());
  return histogram_point(labels, io_bounds_seconds(), per_bucket, static_cast<double>(h.sum_ns) / 1e9);
}

prometheus::ClientMetric bucket_point(const LabelList& labels, const TickHistogram& h) {
  std::vector<std::uint64_t> per_bucket(h.buckets.begin(), h.buckets.end());
  return histogram_point(labels, tick_bounds_seconds(), per_bucket, static_cast<double>(h.sum_ns) / 1e9);
}

std::string generation_label(int gen) { return gen < 0 ? "unknown" : std::to_string(gen); }

}  // namespace

std::vector<prometheus::MetricFamily> gc_metrics(const GcSnapshot& snap) {
  std::vector<prometheus::ClientMetric> pauses;
  std::vector<prometheus::ClientMetric> collected;
  for (const auto& [key, s] : snap.series) {
    const auto& [labels, gen] = key;
    LabelList l = worker_label_list(labels);
    l.emplace_back("generation", generation_label(gen));
    pauses.push_back(bucket_point(l, s.pauses));
    collected.push_back(counter_point(l, static_cast<double>(s.collected)));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(histogram_metric("synapse_profiler_gc_pause_seconds",
                                 "Python garbage-collection pauses measured in the kernel, per worker and generation.",
                                 std::move(pauses)));
  out.push_back(counter_metric("synapse_profiler_gc_collected_objects_total",
                               "Objects freed by Python garbage collections (collections whose count was readable).",
                               std::move(collected)));
  return out;
}

std::vector<prometheus::MetricFamily> db_client_metrics(const DbClientSnapshot& snap, std::size_t table_top_n) {
  std::map<std::string, std::uint64_t> time_per_table;
  for (const auto& [key, h] : snap.series) {
    if (!key.second.table.empty() && key.second.table != "unknown") time_per_table[key.second.table] += h.sum_ns;
  }
  const std::set<std::string> kept = top_n_by_weight(time_per_table, table_top_n);

  // Merge the tables that lost their name into "other" before building points.
  std::map<std::tuple<WorkerLabels, std::string, std::string>, LatencyHistogram> merged;
  for (const auto& [key, h] : snap.series) {
    const auto& [labels, q] = key;
    bool keep = q.table.empty() || q.table == "unknown" || kept.count(q.table);
    merged[{labels, q.verb, keep ? q.table : "other"}].add(h);
  }
  std::vector<prometheus::ClientMetric> points;
  for (const auto& [key, h] : merged) {
    const auto& [labels, verb, table] = key;
    LabelList l = worker_label_list(labels);
    l.emplace_back("verb", verb);
    l.emplace_back("table", table);
    points.push_back(bucket_point(l, h));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(histogram_metric(
      "synapse_profiler_db_client_query_seconds",
      "PostgreSQL queries as the worker sees them: libpq round trip, per verb and first table.", std::move(points)));
  return out;
}

std::vector<prometheus::MetricFamily> db_desc_metrics(
    const DbClientSnapshot& snap, std::size_t desc_top_n,
    const std::map<std::pair<WorkerLabels, std::string>, double>& libpq_ratio,
    const std::map<std::pair<WorkerLabels, std::string>, DescServerTotals>& server) {
  constexpr std::string_view kUnattributed = "unattributed", kUnknown = "unknown", kOther = "other";
  std::map<std::string, std::uint64_t> time_per_desc;
  for (const auto& [key, t] : snap.desc) {
    if (!key.second.empty() && key.second != kUnknown) time_per_desc[key.second] += t.sum_ns;
  }
  const std::set<std::string> kept = top_n_by_weight(time_per_desc, desc_top_n);
  auto label_of = [&](const std::string& desc) -> std::string {
    if (desc.empty()) return std::string(kUnattributed);
    if (desc == kUnknown || kept.count(desc)) return desc;
    return std::string(kOther);
  };
  std::map<std::pair<WorkerLabels, std::string>, DescTotals> merged;
  for (const auto& [key, t] : snap.desc) merged[{key.first, label_of(key.second)}].add(t);

  auto labels = [](const WorkerLabels& w, const char* name, const std::string& value) -> LabelList {
    LabelList l = worker_label_list(w);
    l.emplace_back(name, value);
    return l;
  };
  std::vector<prometheus::ClientMetric> count, seconds, lookups, ratio;
  for (const auto& [key, t] : merged) {
    count.push_back(counter_point(labels(key.first, "desc", key.second), static_cast<double>(t.count)));
    seconds.push_back(counter_point(labels(key.first, "desc", key.second), static_cast<double>(t.sum_ns) / 1e9));
  }
  for (const auto& [key, n] : snap.desc_walks) {
    lookups.push_back(counter_point(labels(key.first, "result", key.second), static_cast<double>(n)));
  }
  for (const auto& [key, r] : libpq_ratio) {
    if (kept.count(key.second)) ratio.push_back(gauge_point(labels(key.first, "desc", key.second), r));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(counter_metric("synapse_profiler_db_desc_queries_total",
                               "libpq calls per Synapse transaction name (the desc of the new_transaction frame they "
                               "were sent from, read from the worker's Python frames); unattributed: sent outside any "
                               "transaction or attribution off for the worker; other: names beyond --db-desc-labels.",
                               std::move(count)));
  out.push_back(counter_metric("synapse_profiler_db_desc_query_seconds_total",
                               "libpq round-trip seconds per Synapse transaction name (same desc label as "
                               "synapse_profiler_db_desc_queries_total).",
                               std::move(seconds)));
  out.push_back(counter_metric("synapse_profiler_db_desc_lookups_total",
                               "libpq calls by what the Python frame walk found: found, no_frame (no new_transaction "
                               "on the stack), no_thread_state, bad_value (desc not a plain ASCII str), off "
                               "(attribution off for the worker).",
                               std::move(lookups)));
  std::map<std::pair<WorkerLabels, std::string>, DescServerTotals> server_merged;
  for (const auto& [key, t] : server) {
    server_merged[{key.first, key.second == "unmatched" ? key.second : label_of(key.second)}].add(t);
  }
  std::vector<prometheus::ClientMetric> statements, statement_s, locks, lock_s;
  for (const auto& [key, t] : server_merged) {
    const LabelList l = labels(key.first, "desc", key.second);
    statements.push_back(counter_point(l, static_cast<double>(t.statements)));
    statement_s.push_back(counter_point(l, static_cast<double>(t.statement_ns) / 1e9));
    locks.push_back(counter_point(l, static_cast<double>(t.lock_waits)));
    lock_s.push_back(counter_point(l, static_cast<double>(t.lock_wait_ns) / 1e9));
  }
  out.push_back(counter_metric("synapse_profiler_db_desc_server_statements_total",
                               "Statements PostgreSQL executed for the worker, per Synapse transaction of the client "
                               "call that sent them (matched by time and connection); unmatched: no single call found.",
                               std::move(statements)));
  out.push_back(counter_metric("synapse_profiler_db_desc_server_seconds_total",
                               "Server-side execution seconds per Synapse transaction (same desc label as "
                               "synapse_profiler_db_desc_server_statements_total).",
                               std::move(statement_s)));
  out.push_back(counter_metric("synapse_profiler_db_desc_lock_waits_total",
                               "Heavyweight lock waits of the worker's backends per Synapse transaction.",
                               std::move(locks)));
  out.push_back(counter_metric("synapse_profiler_db_desc_lock_wait_seconds_total",
                               "Seconds of heavyweight lock waits of the worker's backends per Synapse transaction.",
                               std::move(lock_s)));
  out.push_back(gauge_metric("synapse_profiler_db_desc_libpq_ratio",
                             "Per Synapse transaction name: libpq seconds over the increase of Synapse's own "
                             "synapse_storage_transaction_time_sum_total{desc}, over the last window of scrapes.",
                             std::move(ratio)));
  return out;
}

std::vector<prometheus::MetricFamily> db_server_metrics(const DbServerSnapshot& snap) {
  std::vector<prometheus::ClientMetric> queries, locks, txns, missed;
  for (const auto& [key, h] : snap.queries) {
    const auto& [labels, verb] = key;
    LabelList l = worker_label_list(labels);
    l.emplace_back("verb", verb);
    queries.push_back(bucket_point(l, h));
  }
  for (const auto& [labels, t] : snap.backends) {
    const LabelList l = worker_label_list(labels);
    locks.push_back(bucket_point(l, t.lock_waits));
    auto with_outcome = [&](const char* outcome) {
      LabelList lo = l;
      lo.emplace_back("outcome", outcome);
      return lo;
    };
    txns.push_back(counter_point(with_outcome("commit"), static_cast<double>(t.commits)));
    txns.push_back(counter_point(with_outcome("abort"), static_cast<double>(t.aborts)));
  }
  for (const auto& [labels, n] : snap.missed_statements) {
    missed.push_back(counter_point(worker_label_list(labels), static_cast<double>(n)));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(histogram_metric("synapse_profiler_db_server_query_seconds",
                                 "Query execution inside PostgreSQL (USDT query__start..query__done) in the backends "
                                 "serving each worker (the probes are attached only to those backends).",
                                 std::move(queries)));
  out.push_back(histogram_metric("synapse_profiler_db_lock_wait_seconds",
                                 "Heavyweight lock waits (USDT lock__wait__start..done) in the backends serving each "
                                 "worker.",
                                 std::move(locks)));
  out.push_back(counter_metric("synapse_profiler_db_transactions_total",
                               "Transactions ended by the backends serving each worker, by outcome.", std::move(txns)));
  out.push_back(counter_metric("synapse_profiler_db_server_missed_statements_total",
                               "Statements PostgreSQL ran for each worker before the server-side probes were attached "
                               "to the backend serving them (a new connection's first statements): the libpq calls "
                               "of that connection the worker made before the first one the server side saw.",
                               std::move(missed)));
  return out;
}

std::vector<prometheus::MetricFamily> disk_io_metrics(const IoSnapshot& snap) {
  std::vector<prometheus::ClientMetric> times, bytes;
  for (const auto& [key, s] : snap.series) {
    const auto& [labels, io] = key;
    for (const auto* stage : {"queue", "device"}) {
      const IoHistogram& h = std::string(stage) == "queue" ? s.queue : s.device;
      LabelList l = worker_label_list(labels);
      l.insert(l.end(), {{"device", io.device}, {"op", io.op}, {"stage", stage}, {"via", io.via}});
      times.push_back(bucket_point(l, h));
    }
    LabelList l = worker_label_list(labels);
    l.insert(l.end(), {{"device", io.device}, {"op", io.op}, {"via", io.via}});
    bytes.push_back(counter_point(l, static_cast<double>(s.bytes)));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(histogram_metric("synapse_profiler_disk_io_seconds",
                                 "Block I/O requests: time queued (created -> issued) and on the device (issued -> "
                                 "completed), by the worker that caused them (via=self), a PostgreSQL backend serving "
                                 "it (via=postgres), or nobody we profile (worker=other).",
                                 std::move(times)));
  out.push_back(counter_metric("synapse_profiler_disk_io_bytes_total", "Bytes of completed block I/O requests.",
                               std::move(bytes)));
  return out;
}

std::vector<prometheus::MetricFamily> nvme_metrics(const NvmeSnapshot& snap) {
  std::vector<prometheus::ClientMetric> commands;
  // The latency histogram drops queue and status (bounded: disks x opcodes), the counter keeps them.
  std::map<std::pair<std::string, std::string>, IoHistogram> latency;
  for (const auto& [key, s] : snap.series) {
    commands.push_back(
        counter_point({{"device", key.device}, {"queue", key.queue}, {"opcode", key.opcode}, {"status", key.status}},
                      static_cast<double>(s.latency.count)));
    latency[{key.device, key.opcode}].add(s.latency);
  }
  std::vector<prometheus::ClientMetric> times;
  for (const auto& [key, h] : latency) {
    times.push_back(bucket_point({{"device", key.first}, {"opcode", key.second}}, h));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(counter_metric("synapse_profiler_nvme_commands_total",
                               "NVMe commands completed, by disk (controller: admin commands), submission queue, "
                               "opcode and completion status.",
                               std::move(commands)));
  out.push_back(histogram_metric("synapse_profiler_nvme_command_seconds",
                                 "NVMe command time in the driver: command set up for the submission queue -> "
                                 "completion processed.",
                                 std::move(times)));
  return out;
}

std::vector<prometheus::MetricFamily> reactor_metrics(const ReactorSnapshot& snap) {
  std::vector<prometheus::ClientMetric> ticks, waits, busy, threads;
  for (const auto& [labels, s] : snap.series) {
    const LabelList l = worker_label_list(labels);
    ticks.push_back(bucket_point(l, s.ticks));
    waits.push_back(counter_point(l, static_cast<double>(s.wait_sum_ns) / 1e9));
    for (std::size_t i = 0; i < kThreadStateNames.size(); ++i) {
      LabelList with_state = l;
      with_state.emplace_back("state", kThreadStateNames[i]);
      busy.push_back(counter_point(with_state, static_cast<double>(s.states.busy[i]) / 1e9));
    }
    for (std::size_t r = 0; r < kThreadRoleNames.size(); ++r) {
      for (std::size_t i = 0; i < kThreadStateNames.size(); ++i) {
        LabelList with_state = l;
        with_state.emplace_back("role", kThreadRoleNames[r]);
        with_state.emplace_back("state", kThreadStateNames[i]);
        threads.push_back(counter_point(with_state, static_cast<double>(s.states.roles[r][i]) / 1e9));
      }
    }
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(histogram_metric("synapse_profiler_reactor_tick_seconds",
                                 "Reactor ticks measured in the kernel: on the worker's main thread, from a return of "
                                 "epoll_wait/epoll_pwait/epoll_pwait2 to the next call (Synapse's "
                                 "python_twisted_reactor_tick_time, with its buckets).",
                                 std::move(ticks)));
  out.push_back(counter_metric("synapse_profiler_reactor_poll_wait_seconds_total",
                               "Seconds the worker's main thread waited in epoll (idle reactor).", std::move(waits)));
  out.push_back(counter_metric("synapse_profiler_reactor_busy_seconds_total",
                               "Reactor ticks' time by the main thread's state (scheduler tracepoints): on_cpu, "
                               "runqueue (runnable, no CPU), lock_wait (futex), disk (I/O wait), idle (epoll), "
                               "other_wait. Sums to reactor_tick_seconds_sum.",
                               std::move(busy)));
  out.push_back(counter_metric("synapse_profiler_thread_seconds_total",
                               "Wall time of the worker's threads while profiled, by role (reactor: the main thread; "
                               "other) and state (as reactor_busy_seconds_total).",
                               std::move(threads)));
  out.push_back(counter_metric("synapse_profiler_thread_states_lost_total",
                               "Threads whose states were not counted (kernel table full, or a thread id reused "
                               "before the agent collected the exited thread's values).",
                               {counter_point({}, static_cast<double>(snap.threads_lost))}));
  return out;
}

std::vector<prometheus::MetricFamily> correlation_metrics(const std::map<WorkerLabels, WorkerCorrelation>& corr,
                                                          const std::map<WorkerLabels, std::uint64_t>& overlap_ns) {
  auto labels = [](const WorkerLabels& w) { return worker_label_list(w); };
  std::vector<prometheus::ClientMetric> overlap, overhead, coverage, share, window;
  for (const auto& [w, ns] : overlap_ns) overlap.push_back(counter_point(labels(w), static_cast<double>(ns) / 1e9));
  for (const auto& [w, c] : corr) {
    if (c.python_overhead_seconds) overhead.push_back(counter_point(labels(w), *c.python_overhead_seconds));
    if (c.gc_coverage_ratio) coverage.push_back(gauge_point(labels(w), *c.gc_coverage_ratio));
    if (!c.time_share) continue;
    for (std::size_t i = 0; i < kCauses; ++i) {
      LabelList l = labels(w);
      l.emplace_back("cause", cause_name(static_cast<Cause>(i)));
      share.push_back(gauge_point(l, (*c.time_share)[i]));
    }
    window.push_back(gauge_point(labels(w), c.window_seconds));
  }
  std::vector<prometheus::MetricFamily> out;
  out.push_back(counter_metric("synapse_profiler_db_query_gc_overlap_seconds_total",
                               "Client-side (libpq) query time that overlapped a GC pause of the same worker process.",
                               std::move(overlap)));
  out.push_back(counter_metric(
      "synapse_profiler_db_python_overhead_seconds_total",
      "Synapse's own query time (synapse_storage_query_time_sum) minus the libpq time the probes measured over the "
      "same scrape intervals: GIL wait, GC pauses and Python work inside Synapse's timed region.",
      std::move(overhead)));
  out.push_back(
      gauge_metric("synapse_profiler_gc_coverage_ratio",
                   "GC pause seconds measured by the probes over the increase of Synapse's python_gc_time_sum "
                   "in the last window (1: every collection Synapse timed was seen; above 1: collections "
                   "Synapse did not time; below 1: probes missed some, see `synapse-profiler doctor`).",
                   std::move(coverage)));
  out.push_back(gauge_metric("synapse_profiler_time_share",
                             "Share of wall time in the last window during which the worker had at least one of: a GC "
                             "pause (gc), a libpq call in flight (db_client), a statement executing in a PostgreSQL "
                             "backend serving it (db_server), a block request of its own or of such a backend queued "
                             "or on the device (disk).",
                             std::move(share)));
  out.push_back(gauge_metric("synapse_profiler_time_share_window_seconds",
                             "The span synapse_profiler_time_share covers: the window, or less for a worker found more "
                             "recently.",
                             std::move(window)));
  return out;
}

prometheus::MetricFamily probe_attached_metric(const std::vector<ProbeStatus>& status) {
  std::vector<prometheus::ClientMetric> points;
  for (const auto& s : status) {
    LabelList l = worker_label_list(s.labels);
    l.insert(l.end(), {{"probe", s.probe}, {"method", s.method}});
    points.push_back(gauge_point(l, s.attached ? 1 : 0));
  }
  return gauge_metric("synapse_profiler_probe_attached",
                      "1 when the probe family is attached to the worker by this method, 0 when attaching failed.",
                      std::move(points));
}

prometheus::MetricFamily events_lost_metric(const std::vector<std::pair<std::string, std::uint64_t>>& lost) {
  std::vector<prometheus::ClientMetric> points;
  for (const auto& [probe, n] : lost) points.push_back(counter_point({{"probe", probe}}, static_cast<double>(n)));
  return counter_metric("synapse_profiler_events_lost_total",
                        "Per-event records dropped because the ring buffer was full (in-kernel counts are unaffected).",
                        std::move(points));
}

prometheus::MetricFamily hook_misses_metric(const std::vector<std::pair<std::string, std::uint64_t>>& misses) {
  std::vector<prometheus::ClientMetric> points;
  for (const auto& [probe, n] : misses) points.push_back(counter_point({{"probe", probe}}, static_cast<double>(n)));
  return counter_metric("synapse_profiler_hook_misses_total",
                        "Probe runs the kernel skipped because another BPF program was already running on that CPU "
                        "(e.g. an interrupt inside a handler): what they would have counted is missing everywhere.",
                        std::move(points));
}

std::vector<prometheus::MetricFamily> agent_loop_metrics(std::uint64_t polls, std::uint64_t early_drains,
                                                         std::uint64_t scans) {
  std::vector<prometheus::MetricFamily> out;
  out.push_back(counter_metric(
      "synapse_profiler_probe_polls_total",
      "Rounds in which the agent read every probe's kernel maps and ring buffers (about four a second). The probe "
      "series are as fresh as the last round: a counter that stops rising means stale data.",
      {counter_point({}, static_cast<double>(polls))}));
  out.push_back(counter_metric(
      "synapse_profiler_probe_early_drains_total",
      "Drains of the per-event ring buffers between two of those rounds, because a ring was a quarter full. It rises "
      "with the event rate; records a full ring refuses are counted in synapse_profiler_events_lost_total.",
      {counter_point({}, static_cast<double>(early_drains))}));
  out.push_back(counter_metric(
      "synapse_profiler_discovery_scans_total",
      "Completed scans for Synapse processes (every --rescan-interval). Block I/O of a process no scan has seen yet "
      "waits in the kernel until the next scan tells whose it is.",
      {counter_point({}, static_cast<double>(scans))}));
  return out;
}

}  // namespace sp::exporter
