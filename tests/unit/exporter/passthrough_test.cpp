// Synapse's own metrics re-exposed per worker, from a real scrape of the test workload (tests/data/prom).
#include <gtest/gtest.h>

#include "../../common/test_data.h"
#include "core/scrape/prom_text.h"
#include "exporter/metric_builders.h"
#include "exporter/passthrough.h"

namespace {

sp::ScrapeResult scraped(const std::string& text, const std::string& app) {
  auto parsed = sp::prom::parse_prometheus_text(text);
  EXPECT_TRUE(parsed.ok()) << parsed.error;
  sp::ScrapeResult r;
  r.up = true;
  r.worker_app = app;
  r.duration_seconds = 0.012;
  r.families = std::make_shared<const std::vector<sp::prom::Family>>(std::move(parsed.families));
  return r;
}

}  // namespace

TEST(Passthrough, EverySeriesGetsItsWorkerAndOneFamilyPerName) {
  std::map<std::string, sp::ScrapeResult> latest;
  latest["synchrotron1"] = scraped(sp::test::read_test_data("prom/workload.txt"), "synapse.app.generic_worker");
  latest["master"] = scraped(sp::test::read_test_data("prom/workload.txt"), "synapse.app.homeserver");
  std::string text = sp::exporter::to_text(sp::exporter::passthrough_metrics(latest, {}));
  // Histograms come back whole: buckets, sum, count, per worker.
  EXPECT_NE(text.find("python_gc_time_bucket{worker=\"synchrotron1\",worker_app=\"synapse.app.generic_worker\","
                      "gen=\"0\",le=\"0.0025\"} 7"),
            std::string::npos)
      << text.substr(0, 3000);
  EXPECT_NE(text.find("python_gc_time_count{worker=\"master\",worker_app=\"synapse.app.homeserver\",gen=\"0\"} 7"),
            std::string::npos);
  EXPECT_NE(text.find("python_gc_objects_collected_total{worker=\"master\",worker_app=\"synapse.app.homeserver\","
                      "generation=\"0\"} 14397"),
            std::string::npos);
  // One HELP/TYPE per family even with two workers.
  std::size_t types = 0;
  for (auto p = text.find("# TYPE python_gc_time histogram"); p != std::string::npos;
       p = text.find("# TYPE python_gc_time histogram", p + 1)) {
    ++types;
  }
  EXPECT_EQ(types, 1u);
  // The result parses again (it is valid exposition text).
  auto again = sp::prom::parse_prometheus_text(text);
  EXPECT_TRUE(again.ok()) << again.error;
}

TEST(Passthrough, ClashingLabelsAreKeptAsExportedAndFiltersApply) {
  std::map<std::string, sp::ScrapeResult> latest;
  latest["w1"] = scraped(
      "# TYPE jobs gauge\njobs{worker=\"inner\",queue=\"a\"} 3\n# TYPE noisy_total counter\nnoisy_total 9\n", "app");
  sp::exporter::PassthroughFilter filter;
  filter.exclude = std::regex("noisy_.*");
  std::string text = sp::exporter::to_text(sp::exporter::passthrough_metrics(latest, filter));
  EXPECT_NE(text.find("jobs{worker=\"w1\",worker_app=\"app\",exported_worker=\"inner\",queue=\"a\"} 3"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("noisy_total"), std::string::npos) << text;
  filter.exclude.reset();
  filter.include = std::regex("noisy_.*");
  text = sp::exporter::to_text(sp::exporter::passthrough_metrics(latest, filter));
  EXPECT_EQ(text.find("jobs"), std::string::npos) << text;
  EXPECT_NE(text.find("noisy_total{worker=\"w1\",worker_app=\"app\"} 9"), std::string::npos) << text;
}

TEST(Passthrough, DownWorkersExportOnlyTheirStatus) {
  std::map<std::string, sp::ScrapeResult> latest;
  latest["up1"] = scraped("# TYPE a gauge\na 1\n", "app");
  sp::ScrapeResult down;
  down.worker_app = "app";
  down.error = "GET http://127.0.0.1:1/_synapse/metrics: connection refused";
  latest["down1"] = down;
  std::string data = sp::exporter::to_text(sp::exporter::passthrough_metrics(latest, {}));
  EXPECT_EQ(data.find("down1"), std::string::npos);
  std::string status = sp::exporter::to_text(sp::exporter::scrape_status_metrics(latest));
  EXPECT_NE(status.find("synapse_profiler_synapse_up{worker=\"down1\",worker_app=\"app\"} 0"), std::string::npos);
  EXPECT_NE(status.find("synapse_profiler_synapse_up{worker=\"up1\",worker_app=\"app\"} 1"), std::string::npos);
  EXPECT_NE(status.find("synapse_profiler_synapse_scrape_duration_seconds{worker=\"up1\",worker_app=\"app\"} 0.012"),
            std::string::npos)
      << status;
}

TEST(Passthrough, InterleavedSeriesAreGroupedLikeAdjacentOnes) {
  // Series usually arrive whole (the converter reuses the previous sample's point); interleaved or with `le` not
  // last, they must end up in the same points, in first-appearance order.
  const std::string adjacent =
      "# TYPE t histogram\n"
      "t_bucket{v=\"a\",le=\"1\"} 1\nt_bucket{v=\"a\",le=\"+Inf\"} 2\nt_sum{v=\"a\"} 3\nt_count{v=\"a\"} 2\n"
      "t_bucket{v=\"b\",le=\"1\"} 4\nt_bucket{v=\"b\",le=\"+Inf\"} 5\nt_sum{v=\"b\"} 6\nt_count{v=\"b\"} 5\n"
      "# TYPE q summary\nq{quantile=\"0.5\",x=\"1\"} 7\nq_sum{x=\"1\"} 8\nq_count{x=\"1\"} 9\n";
  const std::string interleaved =
      "# TYPE t histogram\n"
      "t_bucket{v=\"a\",le=\"1\"} 1\nt_bucket{le=\"1\",v=\"b\"} 4\nt_sum{v=\"b\"} 6\nt_bucket{v=\"a\",le=\"+Inf\"} 2\n"
      "t_bucket{v=\"b\",le=\"+Inf\"} 5\nt_count{v=\"a\"} 2\nt_count{v=\"b\"} 5\nt_sum{v=\"a\"} 3\n"
      "# TYPE q summary\nq_sum{x=\"1\"} 8\nq{x=\"1\",quantile=\"0.5\"} 7\nq_count{x=\"1\"} 9\n";
  std::map<std::string, sp::ScrapeResult> a, b;
  a["w"] = scraped(adjacent, "app");
  b["w"] = scraped(interleaved, "app");
  const std::string text = sp::exporter::to_text(sp::exporter::passthrough_metrics(a, {}));
  EXPECT_EQ(sp::exporter::to_text(sp::exporter::passthrough_metrics(b, {})), text);
  EXPECT_NE(text.find("t_bucket{worker=\"w\",worker_app=\"app\",v=\"b\",le=\"+Inf\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("q{worker=\"w\",worker_app=\"app\",x=\"1\",quantile=\"0.5\"} 7\n"), std::string::npos) << text;
}
