// Synapse's own metrics through the agent: each worker's scraped series come back with its worker label; a worker
// whose endpoint is down, hangs, returns garbage or 50 MB is reported down and the others are unaffected.
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../common/test_server.h"
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

// Four workers whose endpoints misbehave (hangs, garbage, 50 MB, nothing listening) next to one that answers: each
// bad one is down with its error logged, the good one keeps its series, every worker keeps its kernel-side series,
// and the agent's own /metrics stays quick although one endpoint never answers.
TEST(ScrapeAgentIT, HostileEndpointsAreDownAndNothingElseBreaks) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-scrape-hostile-it");
  sp::TestServer hangs([](sp::TestServer& s, int, const std::string&) {
    while (!s.stopping()) std::this_thread::sleep_for(10ms);
  });
  sp::TestServer garbage([](sp::TestServer&, int fd, const std::string&) {
    sp::TestServer::respond(fd, "<html>this is not { the exposition format\n");
  });
  sp::TestServer huge([](sp::TestServer& s, int fd, const std::string&) {
    // 50 MB of valid samples: only the size is wrong.
    const std::size_t total = 50u << 20;
    if (!sp::TestServer::send_all(fd, sp::TestServer::response_head("200 OK", "Content-Length: " +
                                                                               std::to_string(total) + "\r\n"))) {
      return;
    }
    std::string chunk;
    while (chunk.size() < (1u << 20)) chunk += "synapse_filler_total{n=\"0123456789\"} 1\n";
    chunk.resize(1u << 20);
    for (std::size_t sent = 0; sent < total && !s.stopping(); sent += chunk.size()) {
      if (!sp::TestServer::send_all(fd, chunk)) return;
    }
  });
  const int dead_port = sp::test::free_port();
  const std::map<std::string, std::string> endpoints = {
      {"hostile_hangs", hangs.url()},
      {"hostile_garbage", garbage.url()},
      {"hostile_huge", huge.url()},
      {"hostile_dead", "http://127.0.0.1:" + std::to_string(dead_port) + "/_synapse/metrics"},
  };
  std::vector<std::unique_ptr<Workload>> workers;
  std::vector<std::string> agent_args = {"--scrape-interval", "1s", "--scrape-timeout", "2s"};
  for (const auto& name : {"hostile_ok", "hostile_hangs", "hostile_garbage", "hostile_huge", "hostile_dead"}) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 40;
    spec.extra_args = {"--gc-schedule", "0:5", "--io-rate", "0"};
    workers.push_back(std::make_unique<Workload>(spec, dir));
    if (auto it = endpoints.find(name); it != endpoints.end()) {
      agent_args.insert(agent_args.end(), {"--metrics-url", it->first + "=" + it->second});
    }
  }
  for (auto& w : workers) ASSERT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
  sp::test::AgentProcess agent(dir, "500ms", agent_args);
  ASSERT_TRUE(agent.running()) << agent.log();
  auto all_reported = [&] {
    std::string m = agent.metrics();
    if (sp::test::metric_value(m, "synapse_profiler_synapse_up", {{"worker", "hostile_ok"}}) != 1.0) return false;
    for (const auto& [name, url] : endpoints) {
      if (sp::test::metric_value(m, "synapse_profiler_synapse_up", {{"worker", name}}) != 0.0) return false;
    }
    return true;
  };
  ASSERT_TRUE(sp::test::wait_for(all_reported, 20s)) << agent.metrics().substr(0, 3000) << agent.log();

  for (int i = 0; i < 3; ++i) {  // while the hanging endpoint holds a scrape thread, /metrics answers at once
    const auto t0 = std::chrono::steady_clock::now();
    std::string m = agent.metrics();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_TRUE(sp::test::metric_value(m, "python_gc_time_count", {{"worker", "hostile_ok"}, {"gen", "0"}}))
        << m.substr(0, 3000);
    EXPECT_EQ(m.find("synapse_filler_total"), std::string::npos) << "nothing of the oversized body is exported";
    for (const auto& w : workers) {
      EXPECT_EQ(sp::test::metric_value(m, "synapse_profiler_probe_attached",
                                       {{"worker", w->spec().name}, {"probe", "gc"}}),
                1.0)
          << w->spec().name;
    }
    std::this_thread::sleep_for(700ms);
  }
  const std::string log = agent.log();
  EXPECT_NE(log.find("hostile_hangs"), std::string::npos) << log;
  EXPECT_NE(log.find("timed out"), std::string::npos) << log;
  EXPECT_NE(log.find("hostile_huge"), std::string::npos) << log;
  EXPECT_TRUE(agent.stop()) << "the agent must stop promptly although a scrape hangs\n" << agent.log();
}
