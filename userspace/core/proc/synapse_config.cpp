#include "core/proc/synapse_config.h"

#include <fmt/core.h>

namespace sp {
namespace {

std::optional<std::string> scalar(const YAML::Node& node) {
  if (!node || !node.IsScalar()) return std::nullopt;
  return node.Scalar();
}

// Synapse's http listener serves /_synapse/metrics when one of its resources lists the name "metrics".
bool serves_metrics_resource(const YAML::Node& listener) {
  const YAML::Node resources = listener["resources"];
  if (!resources || !resources.IsSequence()) return false;
  for (const auto& resource : resources) {
    if (!resource.IsMap()) continue;
    const YAML::Node names = resource["names"];
    if (names && names.IsSequence()) {
      for (const auto& name : names) {
        if (scalar(name) == "metrics") return true;
      }
    } else if (scalar(names) == "metrics") {
      return true;
    }
  }
  return false;
}

std::string first_bind_address(const YAML::Node& listener) {
  const YAML::Node list = listener["bind_addresses"];
  if (list && list.IsSequence()) {
    for (const auto& address : list) {
      if (const auto value = scalar(address)) return *value;
    }
  }
  return scalar(listener["bind_address"]).value_or("");
}

}  // namespace

bool SynapseConfig::merge_file(std::string_view text, std::string& reason) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    // e.msg is one of yaml-cpp's fixed messages; e.what() is avoided only to keep the format ours.
    reason = fmt::format("malformed YAML at line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1, e.msg);
    return false;
  }
  if (!root.IsMap()) {
    reason = "empty or not a key-value map";
    return false;
  }
  std::map<std::string, YAML::Node> parsed;
  for (const auto& entry : root) {
    // Complex (non-scalar) keys cannot be Synapse options; a later duplicate key wins, as in PyYAML.
    if (entry.first.IsScalar()) parsed[entry.first.Scalar()] = entry.second;
  }
  for (auto& [key, value] : parsed) top_[key] = std::move(value);
  return true;
}

std::optional<std::string> SynapseConfig::string_value(const std::string& key) const {
  const auto it = top_.find(key);
  if (it == top_.end()) return std::nullopt;
  auto value = scalar(it->second);
  if (value && value->empty()) return std::nullopt;  // `worker_name:` (null) or ""
  return value;
}

bool SynapseConfig::metrics_enabled() const {
  const auto it = top_.find("enable_metrics");
  if (it == top_.end() || !it->second.IsScalar()) return false;
  bool enabled = false;
  return YAML::convert<bool>::decode(it->second, enabled) && enabled;
}

std::vector<MetricsEndpoint> SynapseConfig::metrics_endpoints(const std::vector<std::string>& keys,
                                                              std::vector<std::string>& problems) const {
  std::vector<MetricsEndpoint> dedicated;
  std::vector<MetricsEndpoint> via_http;
  for (const auto& key : keys) {
    const auto it = top_.find(key);
    if (it == top_.end()) continue;
    const YAML::Node& listeners = it->second;
    if (!listeners.IsSequence()) {
      if (!listeners.IsNull()) problems.push_back(fmt::format("config key {} is not a list", key));
      continue;
    }
    for (std::size_t i = 0; i < listeners.size(); ++i) {
      const YAML::Node listener = listeners[i];
      if (!listener.IsMap()) continue;
      const auto type = scalar(listener["type"]);
      const bool metrics = type == "metrics";
      if (!metrics && !(type == "http" && serves_metrics_resource(listener))) continue;
      int port = 0;
      const YAML::Node port_node = listener["port"];
      if (!port_node || !port_node.IsScalar() || !YAML::convert<int>::decode(port_node, port) || port <= 0 ||
          port > 65535) {
        problems.push_back(fmt::format("{}[{}]: metrics listener without a valid port", key, i));
        continue;
      }
      bool tls = false;
      if (const YAML::Node tls_node = listener["tls"]; tls_node && tls_node.IsScalar()) {
        if (!YAML::convert<bool>::decode(tls_node, tls)) tls = false;
      }
      MetricsEndpoint endpoint;
      endpoint.port = port;
      endpoint.url = fmt::format("{}://{}:{}/_synapse/metrics", tls ? "https" : "http",
                                 metrics_host(first_bind_address(listener)), port);
      (metrics ? dedicated : via_http).push_back(std::move(endpoint));
    }
    break;  // the first listener list present is the one this process uses
  }
  dedicated.insert(dedicated.end(), via_http.begin(), via_http.end());
  return dedicated;
}

std::string metrics_host(std::string_view bind_address) {
  if (bind_address.empty() || bind_address == "0.0.0.0" || bind_address == "::" || bind_address == "*") {
    return "127.0.0.1";
  }
  if (bind_address.find(':') != std::string_view::npos && !bind_address.starts_with('[')) {
    return fmt::format("[{}]", bind_address);
  }
  return std::string(bind_address);
}

}  // namespace sp
