// Snapshot -> metric families for the probe families (GC so far) and the agent's per-probe self series.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

#include "core/correlate/correlator.h"
#include "core/model/db_stats.h"
#include "core/correlate/desc_matcher.h"
#include "core/model/gc_stats.h"
#include "core/model/io_stats.h"
#include "core/model/nvme_stats.h"

namespace sp::exporter {

// synapse_profiler_gc_pause_seconds, synapse_profiler_gc_collected_objects_total.
std::vector<prometheus::MetricFamily> gc_metrics(const GcSnapshot& snap);

// synapse_profiler_db_client_query_seconds{worker, worker_app, verb, table}. Only the `table_top_n` tables with the
// most total query time (over all workers) keep their name; the rest are exported as table="other", so the label
// stays bounded whatever SQL a worker sends.
std::vector<prometheus::MetricFamily> db_client_metrics(const DbClientSnapshot& snap, std::size_t table_top_n);

// Per Synapse transaction name, client side: synapse_profiler_db_desc_queries_total{worker, worker_app, desc},
// _db_desc_query_seconds_total{...}, and _db_desc_lookups_total{worker, worker_app, result} (what the frame walk found
// per query). Only the `desc_top_n` descs with the most query time (over all workers) keep their name, the rest are
// desc="other"; desc="unattributed" for queries sent outside any new_transaction (or from a worker whose attribution
// is off), desc="unknown" for records the ring buffer lost. `libpq_ratio` (from DescLibpqRatio) becomes
// _db_desc_libpq_ratio{worker, worker_app, desc} for the descs that keep their name.
// `server` (from DescMatcher) becomes _db_desc_server_statements_total, _db_desc_server_seconds_total,
// _db_desc_lock_waits_total and _db_desc_lock_wait_seconds_total{worker, worker_app, desc} with the same desc labels,
// plus desc="unmatched" for server time no single client call could be found for.
std::vector<prometheus::MetricFamily> db_desc_metrics(
    const DbClientSnapshot& snap, std::size_t desc_top_n,
    const std::map<std::pair<WorkerLabels, std::string>, double>& libpq_ratio,
    const std::map<std::pair<WorkerLabels, std::string>, DescServerTotals>& server = {});

// synapse_profiler_db_server_query_seconds{worker, worker_app, verb}, _db_lock_wait_seconds{worker, worker_app},
// _db_transactions_total{worker, worker_app, outcome}: PostgreSQL's own view, per worker served.
std::vector<prometheus::MetricFamily> db_server_metrics(const DbServerSnapshot& snap);

// synapse_profiler_disk_io_seconds{worker, worker_app, device, op, stage="queue|device", via} and
// synapse_profiler_disk_io_bytes_total{worker, worker_app, device, op, via}.
std::vector<prometheus::MetricFamily> disk_io_metrics(const IoSnapshot& snap);

// synapse_profiler_nvme_commands_total{device, queue, opcode, status} and
// synapse_profiler_nvme_command_seconds{device, opcode}: nothing when the NVMe probes are not active.
std::vector<prometheus::MetricFamily> nvme_metrics(const NvmeSnapshot& snap);

// The correlation series, per worker: synapse_profiler_db_query_gc_overlap_seconds_total (from `overlap_ns`),
// _db_python_overhead_seconds_total, _gc_coverage_ratio, _time_share{cause} and _time_share_window_seconds. A worker
// lacking what a series needs (Synapse's own counters, a second scrape, a second of watching) has no sample of it.
std::vector<prometheus::MetricFamily> correlation_metrics(const std::map<WorkerLabels, WorkerCorrelation>& corr,
                                                           const std::map<WorkerLabels, std::uint64_t>& overlap_ns);

// synapse_profiler_probe_attached{worker, worker_app, probe, method}.
prometheus::MetricFamily probe_attached_metric(const std::vector<ProbeStatus>& status);

// synapse_profiler_events_lost_total{probe}.
prometheus::MetricFamily events_lost_metric(const std::vector<std::pair<std::string, std::uint64_t>>& lost);

// synapse_profiler_hook_misses_total{probe}.
prometheus::MetricFamily hook_misses_metric(const std::vector<std::pair<std::string, std::uint64_t>>& misses);

// The agent's own loop: synapse_profiler_probe_polls_total (rounds that read every probe's kernel maps and ring
// buffers), synapse_profiler_probe_early_drains_total (drains of the ring buffers between two of them, asked for by
// a filling ring) and synapse_profiler_discovery_scans_total (completed scans of /proc for Synapse processes).
std::vector<prometheus::MetricFamily> agent_loop_metrics(std::uint64_t polls, std::uint64_t early_drains,
                                                          std::uint64_t scans);

}  // namespace sp::exporter
