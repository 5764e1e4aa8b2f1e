// End-to-end /metrics timing (issue 9: "a scrape with 64 workers under 50 ms"): MetricsServer serving a realistic
// exposition for N workers, scraped over loopback with libcurl, without and with gzip (Prometheus always asks for it).
// The exposition: one worker's series of a real agent scrape (the worker with the most samples in FILE, its worker
// and worker_app labels removed) re-exposed for N workers through the pass-through conversion on every scrape, so
// each scrape also builds its MetricFamily values, as the agent's does. The pass-through skips the agent's own
// families (synapse_profiler_*): they are renamed synapse_profiled_*, the same length, to go through it too.
//
// Usage: sp_scrape_bench [--exposition=FILE] [--workers=N] [--scrapes=K]
// FILE defaults to the test workload's scrape (tests/data/prom/workload.txt, small); a real agent's /metrics with a
// few workers is the realistic input. Prints the median, min and max time of K scrapes of each kind and the sizes;
// exits 1 if a scrape fails. Not a timed test: ctest runs it once, small (BenchSmoke.Scrape).
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/scrape/prom_text.h"
#include "core/scrape/scraper.h"
#include "exporter/passthrough.h"
#include "exporter/server.h"

namespace {

struct Options {
  std::string exposition = SP_BENCH_DATA_DIR "/prom/workload.txt";
  int workers = 64;
  int scrapes = 20;
};

bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (a.starts_with("--exposition=")) {
      o.exposition = std::string(a.substr(13));
    } else if (a.starts_with("--workers=")) {
      o.workers = std::stoi(std::string(a.substr(10)));
    } else if (a.starts_with("--scrapes=")) {
      o.scrapes = std::stoi(std::string(a.substr(10)));
    } else {
      return false;
    }
  }
  return o.workers > 0 && o.scrapes > 0;
}

constexpr std::string_view kOwnPrefix = "synapse_profiler_";
constexpr std::string_view kRenamedPrefix = "synapse_profiled_";

void rename_own(std::string& name) {
  if (name.starts_with(kOwnPrefix)) name.replace(0, kOwnPrefix.size(), kRenamedPrefix);
}

// The samples of the worker with the most samples in `families`, without their worker and worker_app labels, the
// agent's own families renamed.
std::vector<sp::prom::Family> one_worker(const std::vector<sp::prom::Family>& families) {
  auto worker_of = [](const sp::prom::Sample& s) -> std::string {
    for (const auto& [k, v] : s.labels) {
      if (k == "worker") return v;
    }
    return "";
  };
  std::map<std::string, int> samples;
  for (const auto& f : families) {
    for (const auto& s : f.samples) ++samples[worker_of(s)];
  }
  samples.erase("");
  if (samples.empty()) return families;  // a worker's own scrape: every series is its
  const std::string top = std::max_element(samples.begin(), samples.end(), [](const auto& a, const auto& b) {
                            return a.second < b.second;
                          })->first;
  std::vector<sp::prom::Family> out;
  for (const auto& f : families) {
    sp::prom::Family g = f;
    std::erase_if(g.samples, [&](const sp::prom::Sample& s) { return worker_of(s) != top; });
    rename_own(g.name);
    for (auto& s : g.samples) {
      rename_own(s.name);
      std::erase_if(s.labels, [](const auto& l) { return l.first == "worker" || l.first == "worker_app"; });
    }
    if (!g.samples.empty()) out.push_back(std::move(g));
  }
  return out;
}

std::size_t count_bytes(char*, std::size_t size, std::size_t n, void* total) {
  *static_cast<std::size_t*>(total) += size * n;
  return size * n;
}

struct Scrape {
  double ms = 0;
  std::size_t body_bytes = 0;  // decoded
  double wire_bytes = 0;
};

// One scrape on a fresh connection, as curl makes it; ms < 0 on failure.
Scrape scrape(const std::string& url, bool gzip) {
  Scrape s;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, count_bytes);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &s.body_bytes);
  if (gzip) curl_easy_setopt(curl.get(), CURLOPT_ACCEPT_ENCODING, "gzip");
  const auto start = std::chrono::steady_clock::now();
  const CURLcode rc = curl_easy_perform(curl.get());
  s.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  curl_off_t wire = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_SIZE_DOWNLOAD_T, &wire);
  s.wire_bytes = static_cast<double>(wire);
  if (rc != CURLE_OK || status != 200) s.ms = -1;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_options(argc, argv, o)) {
    std::fprintf(stderr, "usage: sp_scrape_bench [--exposition=FILE] [--workers=N] [--scrapes=K]\n");
    return 2;
  }
  std::ifstream in(o.exposition, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = sp::prom::parse_prometheus_text(text.str());
  if (!in || !parsed.ok()) {
    std::fprintf(stderr, "%s: %s\n", o.exposition.c_str(), in ? parsed.error.c_str() : "cannot read");
    return 2;
  }
  auto families = std::make_shared<const std::vector<sp::prom::Family>>(one_worker(parsed.families));
  std::map<std::string, sp::ScrapeResult> latest;
  for (int i = 0; i < o.workers; ++i) {
    sp::ScrapeResult& r = latest["generic_worker" + std::to_string(i)];
    r.worker_app = "synapse.app.generic_worker";
    r.up = true;
    r.families = families;
  }

  sp::exporter::MetricsServer server("127.0.0.1:0");
  server.add(std::make_shared<sp::exporter::FunctionCollectable>(
      [&] { return sp::exporter::passthrough_metrics(latest, sp::exporter::PassthroughFilter{}); }));
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/metrics";
  for (bool gzip : {false, true}) {
    std::vector<Scrape> runs;
    for (int i = 0; i < o.scrapes; ++i) runs.push_back(scrape(url, gzip));
    if (std::any_of(runs.begin(), runs.end(), [](const Scrape& s) { return s.ms < 0; })) {
      std::fprintf(stderr, "a scrape of %s failed\n", url.c_str());
      return 1;
    }
    std::sort(runs.begin(), runs.end(), [](const Scrape& a, const Scrape& b) { return a.ms < b.ms; });
    std::printf(
        "workers %d, %-8s: median %.1f ms (min %.1f, max %.1f, %d scrapes), body %.2f MB, on the wire %.2f MB\n",
        o.workers, gzip ? "gzip" : "identity", runs[runs.size() / 2].ms, runs.front().ms, runs.back().ms, o.scrapes,
        static_cast<double>(runs.front().body_bytes) / 1e6, runs.front().wire_bytes / 1e6);
  }
  return 0;
}
