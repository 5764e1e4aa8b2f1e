// The agent's HTTP server over real HTTP on loopback (libcurl): /metrics is the collectables' exposition, gzip when
// asked, /healthz at once, /readyz only once the agent says so, HEAD, nothing else is served (no file, no index, no
// other method), IPv4, IPv6 and dual stack, and neither a slow collection nor clients that hang delay /healthz.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "exporter/metric_builders.h"
#include "exporter/server.h"

namespace {

using sp::exporter::FunctionCollectable;
using sp::exporter::MetricsServer;

struct Response {
  long status = 0;
  std::string body;                            // as received (not decoded)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

std::size_t append_body(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::size_t add_header(char* data, std::size_t size, std::size_t n, void* out) {
  std::string line(data, size * n);
  if (auto colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of("\r\n ") + 1);
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

// `accept_encoding` is sent when not empty; `host` as it goes in a URL ("127.0.0.1", "[::1]").
Response fetch(int port, const std::string& path, const std::string& method = "GET",
               const std::string& accept_encoding = "", const std::string& host = "127.0.0.1") {
  Response r;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  const std::string url = "http://" + host + ":" + std::to_string(port) + path;
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_PATH_AS_IS, 1L);  // send /../ as written
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 10L);
  if (method == "HEAD") {
    curl_easy_setopt(curl.get(), CURLOPT_NOBODY, 1L);
  } else if (method != "GET") {
    curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  curl_slist* headers = nullptr;
  if (!accept_encoding.empty()) {
    headers = curl_slist_append(headers, ("Accept-Encoding: " + accept_encoding).c_str());
  }
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, add_header);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &r.headers);
  const CURLcode rc = curl_easy_perform(curl.get());
  curl_slist_free_all(headers);
  EXPECT_EQ(rc, CURLE_OK) << url << ": " << curl_easy_strerror(rc);
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

std::string gunzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  std::string out;
  char buf[65536];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  inflateEnd(&zs);
  EXPECT_EQ(rc, Z_STREAM_END);
  return out;
}

// A gauge family of `n` series, large enough for gzip to matter.
std::vector<prometheus::MetricFamily> gauges(const std::string& name, int n) {
  std::vector<prometheus::ClientMetric> points;
  for (int i = 0; i < n; ++i) {
    points.push_back(sp::exporter::gauge_point({{"worker", "w" + std::to_string(i)}, {"odd", "a\"b\\c\nd"}}, i * 0.25));
  }
  return {sp::exporter::gauge_metric(name, "Help of " + name + ".", std::move(points))};
}

// One server for the suite, ready.
class MetricsServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<MetricsServer>("127.0.0.1:0");
    server_->add(std::make_shared<FunctionCollectable>([] {
      ++collected_;
      if (fail_) throw std::runtime_error("snapshot failed");
      return gauges("first", 500);
    }));
    server_->add(std::make_shared<FunctionCollectable>([] { return gauges("second", 3); }));
    server_->set_ready();
  }
  static void TearDownTestSuite() { server_.reset(); }
  void SetUp() override {
    ASSERT_GT(server_->port(), 0);
    collected_ = 0;
  }

  static int port() { return server_->port(); }

  static inline std::unique_ptr<MetricsServer> server_;
  static inline std::atomic<int> collected_ = 0;
  static inline std::atomic<bool> fail_ = false;  // the first collectable throws
  const std::string expected_ =
      sp::exporter::to_text(gauges("first", 500)) + sp::exporter::to_text(gauges("second", 3));
};

}  // namespace

TEST_F(MetricsServerTest, MetricsIsTheCollectablesTextInOrder) {
  const Response r = fetch(port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, expected_);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.header("content-length"), std::to_string(expected_.size()));
  EXPECT_EQ(r.header("content-encoding"), "");
  EXPECT_EQ(collected_, 1);
}

TEST_F(MetricsServerTest, GzipWhenAcceptedAndDecodesToTheSameBody) {
  for (const char* accept : {"gzip", "deflate, gzip;q=1.0, *;q=0.5", "GZIP", "br, gzip ; q=0.3"}) {
    const Response r = fetch(port(), "/metrics", "GET", accept);
    EXPECT_EQ(r.status, 200) << accept;
    EXPECT_EQ(r.header("content-encoding"), "gzip") << accept;
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size())) << accept;
    EXPECT_LT(r.body.size(), expected_.size() / 4) << accept;
    EXPECT_EQ(gunzip(r.body), expected_) << accept;
  }
  for (const char* accept :
       {"identity", "gzip;q=0", "gzip; q=0.000, identity", "deflate", "x-gzipped", "gzip;level=1;Q=0"}) {
    const Response r = fetch(port(), "/metrics", "GET", accept);
    EXPECT_EQ(r.header("content-encoding"), "") << accept;
    EXPECT_EQ(r.body, expected_) << accept;
  }
}

TEST_F(MetricsServerTest, HeadHasTheHeadersAndNoBody) {
  const Response r = fetch(port(), "/metrics", "HEAD");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(r.header("content-length"), std::to_string(expected_.size()));
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
}

TEST(MetricsServer, HealthAtOnceReadyOnlyOnceSaid) {
  MetricsServer server("127.0.0.1:0");
  const std::string up =
      "# HELP synapse_profiler_up The agent is running.\n# TYPE synapse_profiler_up gauge\nsynapse_profiler_up 1\n";
  for (bool ready : {false, true}) {
    const Response r = fetch(server.port(), "/healthz");
    EXPECT_EQ(r.status, 200) << ready;
    EXPECT_EQ(r.body, up) << ready;
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(fetch(server.port(), "/healthz", "HEAD").status, 200) << ready;
    const Response readyz = fetch(server.port(), "/readyz");
    EXPECT_EQ(readyz.status, ready ? 200 : 503) << readyz.body;
    EXPECT_EQ(fetch(server.port(), "/readyz", "HEAD").status, ready ? 200 : 503);
    // /metrics answers before anything is added: an empty exposition, not an error.
    const Response metrics = fetch(server.port(), "/metrics");
    EXPECT_EQ(metrics.status, 200);
    EXPECT_EQ(metrics.body, "");
    server.set_ready();
  }
}

TEST_F(MetricsServerTest, NothingElseIsServed) {
  // A file of the test's working directory: the server has no document root, so no file is ever served.
  std::string file;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::current_path())) {
    if (e.is_regular_file()) file = "/" + e.path().filename().string();
  }
  ASSERT_FALSE(file.empty());
  for (const std::string& path : std::vector<std::string>{
           "/", "/index.html", "/metrics/", "/metrics/x", "/metricsx", "/healthz/x", "/healthzz", "/debug/pprof",
           "/../../etc/passwd", "/metrics/../etc/passwd", "/etc/passwd", "/readyz/x", "//metrics", file}) {
    const Response r = fetch(port(), path);
    EXPECT_EQ(r.status, 404) << path << ": " << r.body;
  }
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    EXPECT_EQ(fetch(port(), "/metrics", method).status, 405) << method;
    EXPECT_EQ(fetch(port(), "/healthz", method).status, 405) << method;
    EXPECT_EQ(fetch(port(), "/readyz", method).status, 405) << method;
    EXPECT_EQ(fetch(port(), "/metrics", method).header("allow"), "GET, HEAD") << method;
  }
  EXPECT_EQ(collected_, 0);
}

TEST_F(MetricsServerTest, AFailedCollectionIsA500AndTheServerGoesOn) {
  fail_ = true;
  EXPECT_EQ(fetch(port(), "/metrics").status, 500);
  fail_ = false;
  EXPECT_EQ(fetch(port(), "/metrics").body, expected_);
}

TEST_F(MetricsServerTest, ConcurrentScrapesEachGetTheWholeBody) {
  std::vector<std::thread> clients;
  std::atomic<int> whole = 0;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      for (int j = 0; j < 5; ++j) whole += fetch(port(), "/metrics").body == expected_;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(whole, 20);
}

TEST(MetricsServer, PortInUseIsAOneLineError) {
  MetricsServer first("127.0.0.1:0");
  const std::string listen = "127.0.0.1:" + std::to_string(first.port());
  try {
    MetricsServer second(listen);
    FAIL() << "second bind on the same port succeeded";
  } catch (const sp::exporter::ListenError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.starts_with("cannot listen on " + listen + " (")) << what;
    EXPECT_TRUE(what.ends_with("): is the port already in use? Choose another with --listen HOST:PORT")) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(MetricsServer, StoppingClosesTheListeningSocket) {
  int port;
  {
    MetricsServer first("127.0.0.1:0");
    port = first.port();
    EXPECT_EQ(fetch(port, "/healthz").status, 200);
  }
  MetricsServer again("127.0.0.1:" + std::to_string(port));  // throws if the first socket still listens
  EXPECT_EQ(again.port(), port);
  EXPECT_EQ(fetch(port, "/healthz").status, 200);
}

namespace {

// Whether this host has an IPv6 loopback (a kernel booted with ipv6.disable=1, a container without ::1).
bool have_ipv6_loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// A TCP connection to 127.0.0.1 or ::1; -1 with errno when refused.
int connect_loopback(int port, bool v6) {
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<std::uint16_t>(port));
    a.sin6_addr = in6addr_loopback;
    rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc == 0) return fd;
  const int err = errno;
  close(fd);
  errno = err;
  return -1;
}

// A client that connects over IPv4 and sends nothing but `partial`, then hangs.
int hanging_client(int port, const std::string& partial) {
  const int fd = connect_loopback(port, false);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  if (fd >= 0 && !partial.empty()) {
    EXPECT_EQ(write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  }
  return fd;
}

// Whether a server on `listen` (port 0) answers /metrics over IPv4 loopback and over IPv6 loopback.
std::pair<bool, bool> reachable(const std::string& listen) {
  MetricsServer server(listen);
  server.add(std::make_shared<FunctionCollectable>([] { return gauges("family", 2); }));
  auto answers = [&](bool v6) {
    // Connect first (a refused connection is the expected "no" of the other family), then fetch.
    const int fd = connect_loopback(server.port(), v6);
    if (fd < 0) {
      EXPECT_EQ(errno, ECONNREFUSED) << listen << (v6 ? " over ::1" : " over 127.0.0.1");
      return false;
    }
    close(fd);
    const Response r = fetch(server.port(), "/metrics", "GET", "gzip", v6 ? "[::1]" : "127.0.0.1");
    EXPECT_EQ(r.status, 200) << listen;
    EXPECT_EQ(gunzip(r.body), sp::exporter::to_text(gauges("family", 2))) << listen;
    EXPECT_EQ(fetch(server.port(), "/healthz", "GET", "", v6 ? "[::1]" : "127.0.0.1").status, 200) << listen;
    return true;
  };
  return {answers(false), answers(true)};
}

}  // namespace

TEST(MetricsServer, ListensOnIPv4IPv6AndDualStack) {
  if (!have_ipv6_loopback()) {
    GTEST_SKIP() << "this host has no IPv6 loopback (::1): only IPv4 can be checked";
  }
  EXPECT_EQ(reachable("127.0.0.1:0"), std::make_pair(true, false));
  EXPECT_EQ(reachable("0.0.0.0:0"), std::make_pair(true, false));
  EXPECT_EQ(reachable("[::1]:0"), std::make_pair(false, true));
  EXPECT_EQ(reachable("[::]:0"), std::make_pair(true, true));  // dual stack, whatever net.ipv6.bindv6only says
  EXPECT_EQ(reachable(":0"), std::make_pair(true, true));
  EXPECT_EQ(reachable("0"), std::make_pair(true, true));
}

TEST(MetricsServer, BadAddressesAreOneLineErrors) {
  // 192.0.2.1 (TEST-NET-1) is on no interface of this host.
  for (const char* listen : {"192.0.2.1:0", "[2001:db8::1]:0"}) {
    try {
      MetricsServer server(listen);
      FAIL() << listen << " bound";
    } catch (const sp::exporter::ListenError& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.starts_with(std::string("cannot listen on ") + listen + " (bind: ")) << what;
      EXPECT_TRUE(what.ends_with("no interface of this host has that address")) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

// Clients that connect and send nothing, or half a request, and a collection that takes its time: /healthz and
// /readyz answer within a second all along, and the other scrapes go on.
TEST(MetricsServer, HangingClientsAndASlowCollectionDelayNoProbe) {
  MetricsServer server("127.0.0.1:0");
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> collecting = 0;
  server.add(std::make_shared<FunctionCollectable>([&] {
    ++collecting;
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return release; });
    return gauges("slow", 10);
  }));
  server.set_ready();
  std::vector<int> hanging;
  for (int i = 0; i < 8; ++i) hanging.push_back(hanging_client(server.port(), i % 2 ? "GET /metr" : ""));
  // Two scrapes held in the collection (the build limit), a third waiting for its turn.
  std::vector<std::thread> scrapes;
  std::atomic<int> whole = 0;
  for (int i = 0; i < 3; ++i) {
    scrapes.emplace_back(
        [&] { whole += fetch(server.port(), "/metrics").body == sp::exporter::to_text(gauges("slow", 10)); });
  }
  while (collecting < 2) std::this_thread::yield();
  for (int i = 0; i < 20; ++i) {
    for (const char* path : {"/healthz", "/readyz"}) {
      const auto start = std::chrono::steady_clock::now();
      EXPECT_EQ(fetch(server.port(), path).status, 200) << path;
      EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1)) << path;
    }
  }
  EXPECT_EQ(collecting, 2);  // the limit holds: the third scrape waits
  {
    const std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  for (auto& t : scrapes) t.join();
  EXPECT_EQ(whole, 3);
  EXPECT_EQ(collecting, 3);
  for (int fd : hanging) {
    if (fd >= 0) close(fd);
  }
}
