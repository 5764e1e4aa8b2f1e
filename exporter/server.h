// The HTTP side of the exporter: /metrics (collectors built from snapshots on each scrape) and /healthz, GET and HEAD,
// gzip when the client accepts it. Nothing else is served: no file, no index, no debug endpoint that could reveal SQL
// text or configuration.
//
// civetweb's C API directly rather than prometheus-cpp's Exposer (which runs on the same civetweb): the Exposer
// serialises with TextSerializer and compresses at zlib's default level, with no way to change either. On a
// 64-worker exposition (8.45 MB) TextSerializer took 68 ms and level 6 35 ms; the exporter's writer takes 6 ms and
// level 3 15 ms; a whole scrape, pass-through conversion included (itself 25 -> 7 ms), went from 104 ms to 20 ms
// (gzip: 140 ms to 35 ms; tests/bench/scrape_bench.cpp, docs/performance.md).
// The Exposer's own series (exposer_scrapes_total, exposer_transferred_bytes_total, exposer_request_latencies) are
// gone with it: nothing used them.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct mg_connection;
struct mg_context;

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

// "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" -> the civetweb listening spec; throws ListenError on bad input.
std::string listen_spec(const std::string& listen);
// The port of such a listen address; throws ListenError on bad input.
int listen_port(const std::string& listen);

class MetricsServer {
 public:
  // Binds immediately and serves with 2 threads; throws ListenError with a one-line explanation (e.g. the port is in
  // use).
  explicit MetricsServer(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // /metrics serves the collectables' families in the order they were added. Collect() runs on a server thread.
  void add(std::shared_ptr<prometheus::Collectable> collectable);
  // Starts answering /healthz (200 with one line). The agent calls it once its probes are loaded and the first scan
  // has attached them, so that "healthy" means "measuring".
  void serve_health();
  // The port actually bound (useful with port 0).
  int port() const;

 private:
  struct Stop {
    void operator()(mg_context* ctx) const;
  };

  int serve_metrics(mg_connection* conn) const;

  mutable std::mutex mutex_;  // guards collectables_: add() may run while a scrape is served
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  mutable std::atomic<std::size_t> body_size_hint_ = 0;  // the last /metrics body's size
  std::string health_body_;                              // set once, before /healthz is registered
  std::unique_ptr<mg_context, Stop> ctx_;  // last: stopped (its threads joined) before the members above go
};

}  // namespace sp::exporter
