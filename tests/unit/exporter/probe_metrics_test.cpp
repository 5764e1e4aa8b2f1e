// Snapshot -> exposition text for the probe families.
#include <gtest/gtest.h>

#include "exporter/metric_builders.h"
#include "blockio.h"
#include "exporter/probe_metrics.h"

namespace {

sp::LatencyHistogram hist(std::initializer_list<std::uint64_t> durations_ns) {
  sp::LatencyHistogram h;
  for (auto ns : durations_ns) h.record(ns);
  return h;
}

std::string text(std::vector<prometheus::MetricFamily> f) { return sp::exporter::to_text(f); }

}  // namespace

TEST(ProbeMetrics, GcHistogramUsesTheKernelBucketsExactly) {
  sp::GcSnapshot snap;
  sp::GcSeries s;
  s.pauses = hist({50'000, 50'001, 10'000'000'000ULL, 10'000'000'001ULL});
  s.collected = 42;
  snap.series[{{"synchrotron1", "synapse.app.generic_worker"}, 2}] = s;
  std::string t = text(sp::exporter::gc_metrics(snap));
  const std::string l = "worker=\"synchrotron1\",worker_app=\"synapse.app.generic_worker\",generation=\"2\"";
  EXPECT_NE(t.find("synapse_profiler_gc_pause_seconds_bucket{" + l + ",le=\"5e-05\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_gc_pause_seconds_bucket{" + l + ",le=\"0.0001\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_gc_pause_seconds_bucket{" + l + ",le=\"10\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_gc_pause_seconds_bucket{" + l + ",le=\"+Inf\"} 4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_gc_pause_seconds_count{" + l + "} 4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_gc_collected_objects_total{" + l + "} 42\n"), std::string::npos) << t;
  // 17 bounds + Inf.
  std::size_t buckets = 0;
  for (std::size_t p = t.find("_bucket{"); p != std::string::npos; p = t.find("_bucket{", p + 1)) ++buckets;
  EXPECT_EQ(buckets, 18u);
}

TEST(ProbeMetrics, ClientQueriesKeepOnlyTheTopTablesByTimeAsLabels) {
  sp::DbClientSnapshot snap;
  sp::WorkerLabels w{"w1", "synapse.app.generic_worker"};
  snap.series[{w, {"SELECT", "events"}}] = hist({5'000'000});
  snap.series[{w, {"SELECT", "users"}}] = hist({1'000'000});
  snap.series[{w, {"INSERT", "receipts"}}] = hist({200'000});
  snap.series[{w, {"SELECT", "receipts"}}] = hist({100'000});
  snap.series[{w, {"BEGIN", ""}}] = hist({10'000, 10'000});
  snap.series[{w, {"unknown", "unknown"}}] = hist({70'000});
  std::string t = text(sp::exporter::db_client_metrics(snap, 2));
  auto count = [&](const std::string& verb, const std::string& table) {
    std::string key = "synapse_profiler_db_client_query_seconds_count{worker=\"w1\",worker_app=\"synapse.app."
                      "generic_worker\",verb=\"" + verb + "\",table=\"" + table + "\"} ";
    auto p = t.find(key);
    return p == std::string::npos ? std::string("absent") : t.substr(p + key.size(), t.find('\n', p) - p - key.size());
  };
  EXPECT_EQ(count("SELECT", "events"), "1");
  EXPECT_EQ(count("SELECT", "users"), "1");
  EXPECT_EQ(count("INSERT", "other"), "1");   // receipts: third by time, folded
  EXPECT_EQ(count("SELECT", "other"), "1");
  EXPECT_EQ(count("INSERT", "receipts"), "absent");
  EXPECT_EQ(count("BEGIN", ""), "2");          // no table: never folded
  EXPECT_EQ(count("unknown", "unknown"), "1");  // lost records stay visible
}

TEST(ProbeMetrics, ServerSideSeriesPerWorkerWithOther) {
  sp::DbServerSnapshot snap;
  sp::WorkerLabels w{"w1", "synapse.app.generic_worker"};
  snap.queries[{w, "SELECT"}] = hist({300'000});
  snap.queries[{sp::kOtherWorker, "SELECT"}] = hist({300'000, 400'000});
  sp::BackendTotals t;
  t.lock_waits = hist({2'000'000'000});
  t.commits = 7;
  t.aborts = 1;
  snap.backends[w] = t;
  snap.missed_statements[w] = 3;
  std::string s = text(sp::exporter::db_server_metrics(snap));
  EXPECT_NE(s.find("synapse_profiler_db_server_query_seconds_count{worker=\"other\",worker_app=\"\",verb=\"SELECT\"} 2"),
            std::string::npos) << s;
  EXPECT_NE(s.find("synapse_profiler_db_lock_wait_seconds_sum{worker=\"w1\",worker_app=\"synapse.app.generic_worker\"} 2"),
            std::string::npos) << s;
  EXPECT_NE(s.find("synapse_profiler_db_transactions_total{worker=\"w1\",worker_app=\"synapse.app.generic_worker\","
                   "outcome=\"commit\"} 7"),
            std::string::npos) << s;
  EXPECT_NE(s.find("outcome=\"abort\"} 1"), std::string::npos) << s;
  EXPECT_NE(s.find("# TYPE synapse_profiler_db_server_missed_statements_total counter\n"
                   "synapse_profiler_db_server_missed_statements_total{worker=\"w1\","
                   "worker_app=\"synapse.app.generic_worker\"} 3\n"),
            std::string::npos) << s;
}

TEST(DeviceSelection, GlobsPickDevicesByName) {
  EXPECT_TRUE(sp::device_selected({}, "vda"));
  EXPECT_TRUE(sp::device_selected({"nvme*"}, "nvme0n1"));
  EXPECT_FALSE(sp::device_selected({"nvme*"}, "vda"));
  EXPECT_TRUE(sp::device_selected({"sd?", "vd?"}, "vdb"));
  EXPECT_FALSE(sp::device_selected({"vd?"}, "vda1"));
  EXPECT_EQ(sp::io_op_name(SP_IO_WRITE_SYNC), "write_sync");
  EXPECT_EQ(sp::io_op_name(99), "other");
}

TEST(ProbeMetrics, DiskSeriesHaveBothStagesAndBytes) {
  sp::IoSnapshot snap;
  sp::IoSeries s;
  s.queue.record(5'000);        // <= 10 us
  s.device.record(20'000'000);  // 25 ms bucket
  s.bytes = 4096;
  snap.series[{{"w1", "app"}, {"vda", "read", "postgres"}}] = s;
  std::string t = text(sp::exporter::disk_io_metrics(snap));
  const std::string l = "worker=\"w1\",worker_app=\"app\",device=\"vda\",op=\"read\"";
  EXPECT_NE(t.find("synapse_profiler_disk_io_seconds_bucket{" + l + ",stage=\"queue\",via=\"postgres\",le=\"1e-05\"} 1"),
            std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_disk_io_seconds_bucket{" + l + ",stage=\"device\",via=\"postgres\",le=\"0.01\"} 0"),
            std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_disk_io_seconds_bucket{" + l + ",stage=\"device\",via=\"postgres\",le=\"0.025\"} 1"),
            std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_disk_io_bytes_total{" + l + ",via=\"postgres\"} 4096"), std::string::npos) << t;
}

TEST(ProbeMetrics, CorrelationSeriesArePerWorkerAndOnlyWhereMeasured) {
  const sp::WorkerLabels full{"synchrotron1", "synapse.app.generic_worker"};
  const sp::WorkerLabels young{"media1", "synapse.app.media_repository"};
  std::map<sp::WorkerLabels, sp::WorkerCorrelation> corr;
  corr[full].python_overhead_seconds = 1.5;
  corr[full].gc_coverage_ratio = 0.98;
  corr[full].time_share = std::array<double, sp::kCauses>{0.125, 0.5, 0.25, 0.0625};
  corr[full].window_seconds = 60;
  corr[young] = {};  // nothing measured yet
  std::string t = text(sp::exporter::correlation_metrics(corr, {{full, 250'000'000}}));
  const std::string l = "worker=\"synchrotron1\",worker_app=\"synapse.app.generic_worker\"";
  EXPECT_NE(t.find("synapse_profiler_db_query_gc_overlap_seconds_total{" + l + "} 0.25\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_db_python_overhead_seconds_total{" + l + "} 1.5\n"), std::string::npos) << t;
  EXPECT_NE(t.find("# TYPE synapse_profiler_db_python_overhead_seconds_total counter"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_gc_coverage_ratio{" + l + "} 0.98\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_time_share{" + l + ",cause=\"gc\"} 0.125\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_time_share{" + l + ",cause=\"db_client\"} 0.5\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_time_share{" + l + ",cause=\"db_server\"} 0.25\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_time_share{" + l + ",cause=\"disk\"} 0.0625\n"), std::string::npos) << t;
  EXPECT_NE(t.find("synapse_profiler_time_share_window_seconds{" + l + "} 60\n"), std::string::npos) << t;
  EXPECT_EQ(t.find("media1"), std::string::npos) << "a worker with nothing measured has no samples: " << t;
}
