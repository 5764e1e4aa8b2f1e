#include "exporter/self_metrics.h"

#include <gtest/gtest.h>

#include "exporter/metric_builders.h"
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

TEST(ListenAddress, AcceptsHostPortForms) {
  using sp::exporter::ListenAddress;
  using F = ListenAddress::Family;
  auto is = [](const std::string& listen, F family, const std::string& host, int port) {
    const ListenAddress a = sp::exporter::parse_listen(listen);
    EXPECT_EQ(a.family, family) << listen;
    EXPECT_EQ(a.host, host) << listen;
    EXPECT_EQ(a.port, port) << listen;
  };
  is("0.0.0.0:9477", F::kIPv4, "0.0.0.0", 9477);
  is("127.0.0.1:9477", F::kIPv4, "127.0.0.1", 9477);
  is("[::]:9477", F::kDualStack, "::", 9477);
  is("[::0]:9477", F::kDualStack, "::0", 9477);
  is("[::1]:9477", F::kIPv6Only, "::1", 9477);
  is("[fd00::5]:80", F::kIPv6Only, "fd00::5", 80);
  is(":9477", F::kDualStack, "", 9477);
  is("9477", F::kDualStack, "", 9477);
  is("0", F::kDualStack, "", 0);
  EXPECT_EQ(sp::exporter::listen_port("0.0.0.0:443"), 443);
  EXPECT_EQ(sp::exporter::listen_port("[::]:80"), 80);
  EXPECT_EQ(sp::exporter::listen_port("9477"), 9477);
  EXPECT_THROW(sp::exporter::listen_port("host:port"), sp::exporter::ListenError);
  for (const char* bad : {"host:", "host:port", "1.2.3.4:99999", "[::1]", "[::1]9477", "", "localhost:9477", "::1:9477",
                          "[127.0.0.1]:9477", "[::1%lo]:9477", "1.2.3:9477", "[]:9477", "-1"}) {
    EXPECT_THROW(sp::exporter::parse_listen(bad), sp::exporter::ListenError) << bad;
  }
  try {
    sp::exporter::parse_listen("::1:9477");
  } catch (const sp::exporter::ListenError& e) {
    EXPECT_STREQ(e.what(), "--listen ::1:9477: an IPv6 address goes in brackets, e.g. [::1]:9477 or [::]:9477");
  }
}
