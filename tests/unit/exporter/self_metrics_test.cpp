#include <gtest/gtest.h>

#include "exporter/metric_builders.h"
#include "exporter/self_metrics.h"
#include "exporter/server.h"

TEST(SelfMetrics, ExpositionTextForTwoWorkers) {
  sp::exporter::SelfSnapshot snap;
  snap.version = "1.2.3";
  sp::WorkerInfo main;
  main.host_pid = 100;
  main.worker_name = "master";
  main.worker_app = "synapse.app.homeserver";
  main.metrics_url = "http://127.0.0.1:9000/_synapse/metrics";
  sp::WorkerInfo w;
  w.host_pid = 200;
  w.worker_name = "synchrotron1";
  w.worker_app = "synapse.app.generic_worker";
  snap.workers = {main, w};

  std::string text = sp::exporter::to_text(sp::exporter::self_metrics(snap));
  const char* expected =
      "# HELP synapse_profiler_build_info Build of the running synapse-profiler; value is always 1.\n"
      "# TYPE synapse_profiler_build_info gauge\n"
      "synapse_profiler_build_info{version=\"1.2.3\"} 1\n"
      "# HELP synapse_profiler_worker_info A discovered Synapse process (main or worker); value is always 1.\n"
      "# TYPE synapse_profiler_worker_info gauge\n"
      "synapse_profiler_worker_info{worker=\"master\",worker_app=\"synapse.app.homeserver\",pid=\"100\","
      "metrics_url=\"http://127.0.0.1:9000/_synapse/metrics\"} 1\n"
      "synapse_profiler_worker_info{worker=\"synchrotron1\",worker_app=\"synapse.app.generic_worker\",pid=\"200\","
      "metrics_url=\"\"} 1\n"
      "# HELP synapse_profiler_workers Number of Synapse processes currently discovered.\n"
      "# TYPE synapse_profiler_workers gauge\n"
      "synapse_profiler_workers 2\n";
  EXPECT_EQ(text, expected);
}

TEST(ListenSpec, AcceptsHostPortForms) {
  EXPECT_EQ(sp::exporter::listen_spec("0.0.0.0:9477"), "0.0.0.0:9477");
  EXPECT_EQ(sp::exporter::listen_spec("[::]:9477"), "[::]:9477");
  EXPECT_EQ(sp::exporter::listen_spec(":9477"), "9477");
  EXPECT_EQ(sp::exporter::listen_spec("9477"), "9477");
  EXPECT_EQ(sp::exporter::listen_port("0.0.0.0:443"), 443);
  EXPECT_EQ(sp::exporter::listen_port("[::]:80"), 80);
  EXPECT_EQ(sp::exporter::listen_port("9477"), 9477);
  EXPECT_THROW(sp::exporter::listen_port("host:port"), sp::exporter::ListenError);
  for (const char* bad : {"host:", "host:port", "1.2.3.4:99999", "[::1]", "[::1]9477", ""}) {
    EXPECT_THROW(sp::exporter::listen_spec(bad), sp::exporter::ListenError) << bad;
  }
}
