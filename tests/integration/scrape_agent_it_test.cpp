// Synapse's own metrics through the agent: each worker's scraped series come back with its worker label; a worker
// whose endpoint is down is reported down and the others are unaffected.
#include <fstream>
#include <thread>

#include "harness.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

TEST(ScrapeAgentIT, PassThroughCarriesWorkerLabelsAndADownWorkerIsReportedDown) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-scrape-it");
  WorkloadSpec good;
  good.name = "scraped_ok";
  good.duration_s = 30;
  good.extra_args = {"--gc-schedule", "0:5", "--io-rate", "0"};
  Workload w1(good, dir);
  WorkloadSpec bad = good;
  bad.name = "scraped_down";
  Workload w2(bad, dir);
  ASSERT_TRUE(w1.wait_ready() && w2.wait_ready()) << sp::test::read_text(w1.log_path());
  // scraped_down's metrics are looked for on a port nobody listens on.
  int dead_port = sp::test::free_port();
  sp::test::AgentProcess agent(dir, "500ms",
                               {"--scrape-interval", "1s", "--scrape-timeout", "2s", "--metrics-url",
                                "scraped_down=http://127.0.0.1:" + std::to_string(dead_port) + "/_synapse/metrics"});
  ASSERT_TRUE(agent.running()) << agent.log();
  auto both_reported = [&] {
    std::string m = agent.metrics();
    return sp::test::metric_value(m, "synapse_profiler_synapse_up", {{"worker", "scraped_ok"}}) == 1.0 &&
           sp::test::metric_value(m, "synapse_profiler_synapse_up", {{"worker", "scraped_down"}}) == 0.0;
  };
  ASSERT_TRUE(sp::test::wait_for(both_reported, 15s)) << agent.metrics().substr(0, 2000) << agent.log();
  std::string m = agent.metrics();
  // The workload's own GC histogram, labelled with the worker it came from, and nothing from the down worker.
  auto gc_count = sp::test::metric_value(
      m, "python_gc_time_count", {{"worker", "scraped_ok"}, {"worker_app", "synapse.app.generic_worker"}});
  EXPECT_TRUE(gc_count.has_value()) << m.substr(0, 3000);
  EXPECT_FALSE(sp::test::metric_value(m, "python_gc_time_count", {{"worker", "scraped_down"}}));
  EXPECT_TRUE(sp::test::metric_value(m, "synapse_profiler_synapse_scrape_duration_seconds", {{"worker", "scraped_ok"}}));
  // The kernel-side series of both workers are unaffected by one endpoint being down.
  EXPECT_TRUE(sp::test::metric_value(m, "synapse_profiler_probe_attached",
                                     {{"worker", "scraped_down"}, {"probe", "gc"}}) == 1.0);
  EXPECT_TRUE(agent.stop()) << agent.log();
}
