// The HTTP side of the exporter: prometheus-cpp's Exposer serving /metrics (collectors built from snapshots on each
// scrape) and /healthz. Nothing else is served: no debug endpoint that could reveal SQL text or configuration.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace prometheus {
class Exposer;
}

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
  // Binds immediately; throws ListenError with a one-line explanation (e.g. the port is in use).
  explicit MetricsServer(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void add(std::shared_ptr<prometheus::Collectable> collectable);
  // Starts answering /healthz (200 with one line). The agent calls it once its probes are loaded and the first scan
  // has attached them, so that "healthy" means "measuring".
  void serve_health();
  // The port actually bound (useful with port 0).
  int port() const;

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<std::shared_ptr<prometheus::Collectable>> owned_;
};

}  // namespace sp::exporter
