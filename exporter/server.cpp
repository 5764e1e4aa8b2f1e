#include "exporter/server.h"

#include <prometheus/exposer.h>

#include <charconv>

#include "exporter/families.h"

namespace sp::exporter {
namespace {

bool valid_port(std::string_view s) {
  int port = -1;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  return ec == std::errc() && ptr == s.data() + s.size() && port >= 0 && port <= 65535;
}

}  // namespace

namespace {

struct HostPort {
  std::string host;  // "" when only a port is given
  std::string port;  // checked: 0-65535
};

HostPort split_listen(const std::string& listen) {
  HostPort hp;
  if (listen.starts_with('[')) {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      throw ListenError("--listen " + listen + ": expected [IPv6]:PORT");
    }
    hp.host = listen.substr(0, close + 1);
    hp.port = listen.substr(close + 2);
  } else if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    hp.host = listen.substr(0, colon);
    hp.port = listen.substr(colon + 1);
  } else {
    hp.port = listen;
  }
  if (!valid_port(hp.port)) {
    throw ListenError("--listen " + listen + ": '" + hp.port + "' is not a port number (0-65535)");
  }
  return hp;
}

}  // namespace

std::string listen_spec(const std::string& listen) {
  HostPort hp = split_listen(listen);
  return hp.host.empty() ? hp.port : hp.host + ":" + hp.port;
}

int listen_port(const std::string& listen) { return std::stoi(split_listen(listen).port); }

MetricsServer::MetricsServer(const std::string& listen) {
  std::string spec = listen_spec(listen);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(spec, 2);
  } catch (const std::exception& e) {
    throw ListenError("cannot listen on " + listen + " (" + e.what() +
                      "): is the port already in use? Choose another with --listen HOST:PORT");
  }
}

void MetricsServer::serve_health() {
  auto health = std::make_shared<FunctionCollectable>([] {
    return std::vector<prometheus::MetricFamily>{
        gauge_family("synapse_profiler_up", "The agent is running.", {gauge_point({}, 1)})};
  });
  owned_.push_back(health);
  exposer_->RegisterCollectable(health, "/healthz");
}

MetricsServer::~MetricsServer() = default;

void MetricsServer::add(std::shared_ptr<prometheus::Collectable> collectable) {
  owned_.push_back(collectable);
  exposer_->RegisterCollectable(collectable, "/metrics");
}

int MetricsServer::port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? -1 : ports.front();
}

}  // namespace sp::exporter
