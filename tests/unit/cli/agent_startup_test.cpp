// `run`'s start-up (cli::serve_and_start) under a first scan that takes as long as the test wants: /healthz answers
// within a second all along (a Kubernetes liveness probe), /readyz says 503 until the scan is done and 200 after,
// and /metrics serves the agent's own series meanwhile instead of waiting for the scan.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/profiling_loop.h"
#include "cli/agent_setup.h"
#include "exporter/server.h"

namespace {

struct Answer {
  long status = 0;
  std::string body;
  std::chrono::steady_clock::duration took{};
};

std::size_t append_body(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

Answer get(int port, const std::string& path) {
  Answer a;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 5L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &a.body);
  const auto start = std::chrono::steady_clock::now();
  const CURLcode rc = curl_easy_perform(curl.get());
  a.took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(rc, CURLE_OK) << url << ": " << curl_easy_strerror(rc);
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &a.status);
  return a;
}

}  // namespace

TEST(AgentStartup, HealthAnswersWithinASecondThroughoutALongFirstScan) {
  // The first scan blocks until the test has probed enough; later scans (the loop's thread) return at once.
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> scans = 0;
  auto scan = [&] {
    if (scans++ == 0) {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return release; });
    }
    return sp::ScanResult{};
  };
  sp::agent::ProfilingLoop loop({}, scan, {});
  sp::exporter::MetricsServer server("127.0.0.1:0");
  const sp::cli::CliOptions options;
  std::thread starting([&] { sp::cli::serve_and_start(server, loop, options); });
  while (scans == 0) std::this_thread::yield();  // the first scan has begun, and stays in it

  const auto probing_from = std::chrono::steady_clock::now();
  int probes = 0;
  while (std::chrono::steady_clock::now() - probing_from < std::chrono::milliseconds(1500)) {
    const Answer health = get(server.port(), "/healthz");
    EXPECT_EQ(health.status, 200);
    EXPECT_LT(health.took, std::chrono::seconds(1));
    const Answer ready = get(server.port(), "/readyz");
    EXPECT_EQ(ready.status, 503) << ready.body;
    EXPECT_LT(ready.took, std::chrono::seconds(1));
    ++probes;
  }
  const Answer metrics = get(server.port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_LT(metrics.took, std::chrono::seconds(1));
  EXPECT_NE(metrics.body.find("synapse_profiler_build_info"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("synapse_profiler_discovery_scans_total 0"), std::string::npos) << metrics.body;
  EXPECT_EQ(scans, 1) << "the first scan ended while the test held it";
  EXPECT_GE(probes, 5);

  {
    const std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  starting.join();
  EXPECT_EQ(get(server.port(), "/readyz").status, 200);
  EXPECT_EQ(get(server.port(), "/healthz").status, 200);
  loop.stop();
}
