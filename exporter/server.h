// The HTTP side of the exporter: /metrics (collectors built from snapshots on each scrape), /healthz (liveness) and
// /readyz (readiness), GET and HEAD, gzip when the client accepts it. Nothing else is served: no file, no index, no
// debug endpoint that could reveal SQL text or configuration.
//
// The server is libmicrohttpd (Debian's libmicrohttpd12), a thread per connection under a connection limit, on a
// socket this module binds itself: IPv4, IPv6 only, or dual stack (one IPv6 socket that IPv4 clients reach as
// v4-mapped addresses), with the bind's own errno in the error. A thread per connection keeps the endpoints apart:
// a scrape that builds an 8 MB exposition, a slow reader or a client that sends nothing never delays /healthz.
// Limits (kMaxConnections etc. in server.cpp): 32 connections at once, 10 s without progress closes a connection,
// at most 2 expositions built at once (each holds its body in memory), 32 kB of request headers.
//
// The exposition is written by the exporter's own writer rather than prometheus-cpp's Exposer and TextSerializer:
// on a 64-worker exposition (8.45 MB) TextSerializer took 68 ms and zlib's default level 35 ms; the exporter's writer
// takes 6 ms and level 3 15 ms (tests/bench/scrape_bench.cpp, docs/performance.md).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct MHD_Connection;
struct MHD_Daemon;

namespace sp::exporter {

// A collectable whose families come from a function called on every scrape.
class FunctionCollectable : public prometheus::Collectable {
 public:
  using Fn = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit FunctionCollectable(Fn fn) : fn_(std::move(fn)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return fn_(); }

 private:
  Fn fn_;
};

struct ListenError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A parsed --listen value.
struct ListenAddress {
  enum class Family { kIPv4, kIPv6Only, kDualStack };
  Family family = Family::kDualStack;
  std::string host;  // numeric: "0.0.0.0", "::1"; "" for every interface of both families
  int port = 0;      // 0-65535; 0 lets the kernel choose
};

// "A.B.C.D:PORT" (IPv4), "[::]:PORT" (dual stack: every interface, IPv4 and IPv6), "[V6]:PORT" (that IPv6 address
// only), ":PORT" or "PORT" (every interface of both families; IPv4 only on a kernel without IPv6). Numeric addresses
// only. Throws ListenError with a one-line explanation on anything else.
ListenAddress parse_listen(const std::string& listen);
// The port of such a listen address; throws ListenError on bad input.
int listen_port(const std::string& listen);

class MetricsServer {
 public:
  // Binds immediately and serves at once: /healthz answers 200 from here on, /readyz 503 until set_ready(), /metrics
  // whatever has been add()ed so far. Throws ListenError with a one-line explanation (e.g. the port is in use).
  explicit MetricsServer(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // /metrics serves the collectables' families in the order they were added. Collect() runs on a server thread.
  void add(std::shared_ptr<prometheus::Collectable> collectable);
  // /readyz answers 200 from now on. The agent calls it once its probes are loaded and the first scan has attached
  // them, so that "ready" means "measuring". /healthz (liveness) does not wait for it: a liveness probe that timed out
  // during a long first scan would restart the agent in a loop.
  void set_ready();
  // The port actually bound (useful with port 0).
  int port() const;

 private:
  struct Stop {
    void operator()(MHD_Daemon* daemon) const;
  };

  // False: libmicrohttpd closes the connection (out of memory).
  bool answer(MHD_Connection* conn, const char* url, const char* method) const;
  bool serve_metrics(MHD_Connection* conn) const;

  mutable std::mutex mutex_;  // guards collectables_: add() may run while a scrape is served
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  mutable std::atomic<std::size_t> body_size_hint_ = 0;  // the last /metrics body's size
  mutable std::mutex build_mutex_;                       // guards builds_
  mutable std::condition_variable build_done_;
  mutable int builds_ = 0;  // expositions being built now (at most kMaxBuilds)
  const std::string health_body_;
  std::atomic<bool> ready_ = false;
  int port_ = -1;
  std::unique_ptr<MHD_Daemon, Stop> daemon_;  // last: stopped (its threads joined) before the members above go
};

}  // namespace sp::exporter
