// The Synapse metrics scraper against tiny HTTP servers on 127.0.0.1:0 written here (threads + sockets): a good
// endpoint, one that is down, one that hangs, one that never stops sending, garbage, a 50 MB body, a compression
// bomb, huge label sets, redirects; and a round where one bad target must not hold up the good ones.
#include "core/scrape/scraper.h"

#include "../../common/test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sp {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(SP_TEST_DATA_DIR) + "/prom/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void serve_text(const std::string& text, TestServer& server, int fd) {
  (void)server;
  TestServer::respond(fd, text);
}

// Waits until the server says to stop: a peer that accepted the connection and never answers.
void hang(TestServer& server, int /*fd*/, const std::string& /*request*/) {
  while (!server.stopping()) std::this_thread::sleep_for(10ms);
}

// A port nothing listens on: bound once to learn a free port, then closed.
int refused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

ScrapeTarget target(const std::string& worker, const std::string& url) {
  return ScrapeTarget{worker, "synapse.app.generic_worker", url};
}

ScrapeOptions fast_options() {
  ScrapeOptions o;
  o.timeout = 2000ms;
  return o;
}

const prom::Family* find_family(const ScrapeResult& r, std::string_view name) {
  if (!r.families) return nullptr;
  for (const auto& f : *r.families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(Scraper, ServesValidText) {
  const std::string text = read_data("workload.txt");
  TestServer server([&](TestServer& s, int fd, const std::string&) { serve_text(text, s, fd); });
  const ScrapeResult r = scrape_target(target("synchrotron1", server.url()), fast_options());
  ASSERT_TRUE(r.up) << r.error;
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.url, server.url());
  EXPECT_EQ(r.worker_app, "synapse.app.generic_worker");
  EXPECT_GT(r.duration_seconds, 0.0);
  EXPECT_LT(r.duration_seconds, 2.0);
  EXPECT_LE(r.when, std::chrono::system_clock::now());
  ASSERT_TRUE(r.families);
  const prom::Family* gc = find_family(r, "python_gc_time");
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->samples.size(), 57u);

  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0], StartsWith("GET /_synapse/metrics HTTP/1.1\r\n"));
  EXPECT_THAT(requests[0], HasSubstr("\r\nAccept: text/plain;version=0.0.4\r\n"));
  EXPECT_THAT(requests[0], HasSubstr("\r\nAccept-Encoding: "));
  EXPECT_THAT(requests[0], HasSubstr("gzip"));
  EXPECT_THAT(requests[0], HasSubstr("\r\nUser-Agent: synapse-profiler/"));
}

TEST(Scraper, IgnoresProxyEnvironment) {
  const std::string text = read_data("workload.txt");
  TestServer server([&](TestServer& s, int fd, const std::string&) { serve_text(text, s, fd); });
  const std::string dead_proxy = "http://127.0.0.1:" + std::to_string(refused_port());
  ::setenv("http_proxy", dead_proxy.c_str(), 1);
  ::setenv("HTTP_PROXY", dead_proxy.c_str(), 1);
  ::setenv("ALL_PROXY", dead_proxy.c_str(), 1);
  const ScrapeResult r = scrape_target(target("w", server.url()), fast_options());
  ::unsetenv("http_proxy");
  ::unsetenv("HTTP_PROXY");
  ::unsetenv("ALL_PROXY");
  EXPECT_TRUE(r.up) << r.error;
}

TEST(Scraper, GzipBody) {
  const std::string gz = read_data("workload.txt.gz");
  TestServer server([&](TestServer&, int fd, const std::string&) {
    TestServer::respond(fd, gz, "200 OK", "Content-Encoding: gzip\r\n");
  });
  const ScrapeResult r = scrape_target(target("w", server.url()), fast_options());
  ASSERT_TRUE(r.up) << r.error;
  const prom::Family* gc = find_family(r, "python_gc_time");
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->samples.size(), 57u);
}

TEST(Scraper, CompressionBombStopsAtTheDecodedCap) {
  const std::string bomb = read_data("bomb.txt.gz");  // 81 KB on the wire, 32 MiB decoded
  TestServer server([&](TestServer&, int fd, const std::string&) {
    TestServer::respond(fd, bomb, "200 OK", "Content-Encoding: gzip\r\n");
  });
  ScrapeOptions options = fast_options();
  options.max_body_bytes = 1 << 20;
  const ScrapeResult r = scrape_target(target("w", server.url()), options);
  EXPECT_FALSE(r.up);
  EXPECT_EQ(r.error, "GET " + server.url() + ": body larger than 1048576 bytes (decoded); transfer aborted");
  EXPECT_FALSE(r.families);
}

TEST(Scraper, ConnectionRefused) {
  const std::string url = "http://127.0.0.1:" + std::to_string(refused_port()) + "/_synapse/metrics";
  const ScrapeResult r = scrape_target(target("w", url), fast_options());
  EXPECT_FALSE(r.up);
  EXPECT_THAT(r.error, StartsWith("GET " + url + ": "));
  EXPECT_THAT(r.error, HasSubstr("onnect"));  // "Failed to connect ... Couldn't connect to server"
  EXPECT_FALSE(r.families);
  EXPECT_LT(r.duration_seconds, 2.0);
}

TEST(Scraper, HangingEndpointTimesOut) {
  TestServer server(hang);
  ScrapeOptions options;
  options.timeout = 300ms;
  const ScrapeResult r = scrape_target(target("w", server.url()), options);
  EXPECT_FALSE(r.up);
  EXPECT_THAT(r.error, StartsWith("GET " + server.url() + ": "));
  EXPECT_THAT(r.error, HasSubstr("timed out"));
  EXPECT_GE(r.duration_seconds, 0.25);
  EXPECT_LT(r.duration_seconds, 5.0);  // the timeout, not forever
}

TEST(Scraper, EndlessBodyStopsAtTheCap) {
  std::atomic<std::size_t> sent{0};
  std::atomic<bool> peer_gone{false};
  TestServer server([&](TestServer& s, int fd, const std::string&) {
    if (!TestServer::send_all(fd, TestServer::response_head("200 OK", ""))) return;
    const std::string chunk(64 * 1024, '#');  // comment lines would parse forever: only the cap can stop this
    while (!s.stopping()) {
      if (!TestServer::send_all(fd, chunk)) {
        peer_gone = true;
        return;
      }
      sent += chunk.size();
    }
  });
  ScrapeOptions options = fast_options();
  options.timeout = 20'000ms;  // the cap must stop it, not the timeout
  options.max_body_bytes = 1 << 20;
  const ScrapeResult r = scrape_target(target("w", server.url()), options);
  EXPECT_FALSE(r.up);
  EXPECT_EQ(r.error, "GET " + server.url() + ": body larger than 1048576 bytes (decoded); transfer aborted");
  EXPECT_LT(r.duration_seconds, 10.0);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!peer_gone && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(peer_gone) << "the scraper did not close the connection";
  EXPECT_LT(sent.load(), std::size_t{64} << 20);  // the cap plus socket buffers, not an unbounded stream
}

TEST(Scraper, FiftyMegabyteBody) {
  TestServer server([&](TestServer& s, int fd, const std::string&) {
    const std::size_t total = 50'000'000;
    if (!TestServer::send_all(fd, TestServer::response_head("200 OK", "Content-Length: " + std::to_string(total) + "\r\n")))
      return;
    std::string chunk;
    while (chunk.size() < 1'000'000) chunk += "synapse_big_total{i=\"0\"} 1.0\n";
    chunk.resize(1'000'000);
    for (std::size_t done = 0; done < total && !s.stopping(); done += chunk.size()) {
      if (!TestServer::send_all(fd, chunk)) return;
    }
  });
  const ScrapeResult r = scrape_target(target("w", server.url()), ScrapeOptions{});  // defaults: 16 MiB
  EXPECT_FALSE(r.up);
  EXPECT_EQ(r.error, "GET " + server.url() + ": body larger than 16777216 bytes (decoded); transfer aborted");
}

TEST(Scraper, GarbageInsteadOfHttp) {
  TestServer server([](TestServer&, int fd, const std::string&) {
    TestServer::send_all(fd, std::string("\x00\xff\x13garbage\r\n\r\nnot http at all", 30));
  });
  const ScrapeResult r = scrape_target(target("w", server.url()), fast_options());
  EXPECT_FALSE(r.up);
  EXPECT_THAT(r.error, StartsWith("GET " + server.url() + ": "));
}

TEST(Scraper, GarbageBody) {
  TestServer server([](TestServer&, int fd, const std::string&) {
    TestServer::respond(fd, "<html><body>Synapse is running</body></html>\n");
  });
  const ScrapeResult r = scrape_target(target("w", server.url()), fast_options());
  EXPECT_FALSE(r.up);
  EXPECT_EQ(r.error, "parse " + server.url() + ": line 1: invalid metric name at \"<html><body>Synapse is running</body></html>\"");
  EXPECT_FALSE(r.families);
}

TEST(Scraper, HugeLabelSets) {
  std::string body = "synapse_huge{";
  for (int i = 0; i < 20'000; ++i) body += "label_" + std::to_string(i) + "=\"" + std::string(20, 'v') + "\",";
  body += "} 1\n";
  TestServer server([&](TestServer&, int fd, const std::string&) { TestServer::respond(fd, body); });
  const ScrapeResult r = scrape_target(target("w", server.url()), fast_options());
  EXPECT_FALSE(r.up);
  EXPECT_EQ(r.error, "parse " + server.url() + ": line 1: sample synapse_huge: more than 64 labels");
}

TEST(Scraper, HttpErrorsAndRedirects) {
  TestServer other([](TestServer&, int fd, const std::string&) { TestServer::respond(fd, "a 1\n"); });
  TestServer server([&](TestServer&, int fd, const std::string& request) {
    if (request.rfind("GET /moved", 0) == 0) {
      TestServer::respond(fd, "", "302 Found", "Location: " + other.url() + "\r\n");
    } else {
      TestServer::respond(fd, "oops\n", "500 Internal Server Error");
    }
  });
  const ScrapeResult failed = scrape_target(target("w", server.url()), fast_options());
  EXPECT_FALSE(failed.up);
  EXPECT_EQ(failed.error, "GET " + server.url() + ": HTTP 500");
  const ScrapeResult moved = scrape_target(target("w", server.url("/moved")), fast_options());
  EXPECT_FALSE(moved.up);
  EXPECT_EQ(moved.error, "GET " + server.url("/moved") + ": HTTP 302 (redirects are not followed)");
  EXPECT_EQ(other.connections(), 0);
}

TEST(Scraper, OnlyHttpUrls) {
  for (const char* url : {"file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/", "127.0.0.1:9000/metrics", ""}) {
    const ScrapeResult r = scrape_target(target("w", url), fast_options());
    EXPECT_FALSE(r.up);
    EXPECT_EQ(r.error, std::string("GET ") + url + ": only http:// and https:// URLs are scraped");
  }
}

// One hung, one refused and one garbage endpoint among good ones: the good ones are up, finish in their own time,
// and the round ends within the hung one's timeout.
TEST(Scraper, BadTargetsDoNotDelayGoodOnes) {
  const std::string text = read_data("workload.txt");
  TestServer good1([&](TestServer& s, int fd, const std::string&) { serve_text(text, s, fd); });
  TestServer good2([&](TestServer& s, int fd, const std::string&) { serve_text(text, s, fd); });
  TestServer hung(hang);
  TestServer garbage([](TestServer&, int fd, const std::string&) { TestServer::respond(fd, "}{\n"); });
  const std::string refused = "http://127.0.0.1:" + std::to_string(refused_port()) + "/";

  for (const std::size_t parallel : {std::size_t{8}, std::size_t{2}}) {
    ScrapeOptions options;
    options.timeout = 1500ms;
    options.max_parallel = parallel;
    Scraper scraper(options);
    scraper.set_targets({target("hung", hung.url()), target("good1", good1.url()), target("refused", refused),
                         target("garbage", garbage.url()), target("good2", good2.url())});
    const auto t0 = std::chrono::steady_clock::now();
    scraper.scrape_round();
    const double round_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto latest = scraper.latest();
    ASSERT_EQ(latest.size(), 5u) << parallel;
    EXPECT_TRUE(latest.at("good1").up) << latest.at("good1").error;
    EXPECT_TRUE(latest.at("good2").up) << latest.at("good2").error;
    EXPECT_LT(latest.at("good1").duration_seconds, 1.0);
    EXPECT_LT(latest.at("good2").duration_seconds, 1.0);
    EXPECT_FALSE(latest.at("hung").up);
    EXPECT_THAT(latest.at("hung").error, HasSubstr("timed out"));
    EXPECT_GE(latest.at("hung").duration_seconds, 1.4);
    EXPECT_FALSE(latest.at("refused").up);
    EXPECT_FALSE(latest.at("garbage").up);
    EXPECT_THAT(latest.at("garbage").error, StartsWith("parse "));
    // The hung target holds one thread for its timeout; everything else ran beside it.
    EXPECT_LT(round_seconds, 1.5 + 1.0) << parallel;
  }
}

TEST(Scraper, BackgroundThreadAndTargetChanges) {
  const std::string text = read_data("workload.txt");
  TestServer good([&](TestServer& s, int fd, const std::string&) { serve_text(text, s, fd); });
  TestServer hung(hang);
  ScrapeOptions options;
  options.interval = 100ms;
  options.timeout = 10'000ms;  // stop() must not wait for this
  Scraper scraper(options);
  scraper.set_targets({target("good", good.url()), target("good", hung.url())});  // second "good" ignored
  scraper.start();
  const auto wait_for = [&](const std::function<bool(const std::map<std::string, ScrapeResult>&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done(scraper.latest())) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  };
  ASSERT_TRUE(wait_for([](const auto& l) { return l.contains("good") && l.at("good").up; }));
  // Scraped again and again at the interval.
  ASSERT_TRUE(wait_for([&](const auto&) { return good.connections() >= 3; }));
  EXPECT_EQ(hung.connections(), 0);

  // A changed list triggers a round; results of workers that left are dropped at once.
  scraper.set_targets({target("good", good.url()), target("hung", hung.url())});
  ASSERT_TRUE(wait_for([&](const auto&) { return hung.connections() >= 1; }));
  scraper.set_targets({target("hung", hung.url())});
  EXPECT_FALSE(scraper.latest().contains("good"));

  // stop() aborts the hung transfer (10 s timeout) instead of waiting for it; a cancelled scrape is not a result.
  const auto t0 = std::chrono::steady_clock::now();
  scraper.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_FALSE(scraper.latest().contains("hung"));
  scraper.stop();  // idempotent
}

// The agent polls generation() every 250 ms and copies latest() only when it moved: it must move with every stored
// result (even an unchanged "down") and every dropped one, and stay put otherwise.
TEST(Scraper, GenerationMovesWithEveryStoredOrDroppedResult) {
  const std::string text = read_data("workload.txt");
  TestServer good([&](TestServer& s, int fd, const std::string&) { serve_text(text, s, fd); });
  Scraper scraper(fast_options());
  EXPECT_EQ(scraper.generation(), 0u);
  scraper.set_targets({target("good", good.url()), target("refused", "http://127.0.0.1:1/_synapse/metrics")});
  EXPECT_EQ(scraper.generation(), 0u);  // no result yet
  scraper.scrape_round();
  EXPECT_EQ(scraper.generation(), 2u);
  scraper.scrape_round();
  EXPECT_EQ(scraper.generation(), 4u);
  const std::uint64_t before = scraper.generation();
  EXPECT_EQ(scraper.latest().size(), 2u);
  EXPECT_EQ(scraper.generation(), before);  // reading changes nothing
  scraper.set_targets({target("good", good.url()), target("refused", "http://127.0.0.1:1/_synapse/metrics")});
  EXPECT_EQ(scraper.generation(), before);  // same list: nothing dropped
  scraper.set_targets({target("good", good.url())});
  EXPECT_EQ(scraper.generation(), before + 1);  // "refused" dropped
  EXPECT_FALSE(scraper.latest().contains("refused"));
}

}  // namespace
}  // namespace sp
