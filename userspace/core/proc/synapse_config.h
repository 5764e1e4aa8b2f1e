// The parts of a Synapse configuration that discovery needs: worker identity and the metrics listener. Synapse
// loads its -c/--config-path files in order and lets later files replace earlier TOP-LEVEL keys (a shallow
// dict.update); SynapseConfig mirrors that. Config files hold secrets (database passwords, macaroon_secret_key,
// registration_shared_secret): nothing here ever puts a config value into an error message, only keys and positions.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sp {

// A metrics endpoint declared by a listener.
struct MetricsEndpoint {
  std::string url;  // http://127.0.0.1:9000/_synapse/metrics
  int port = 0;
};

class SynapseConfig {
 public:
  // Parses one file's text and merges its top-level keys over the ones seen so far. On failure returns false,
  // leaves the config unchanged and sets `reason` (never containing file content).
  bool merge_file(std::string_view text, std::string& reason);

  // Scalar string value of a top-level key (nullopt if absent, null or not a scalar).
  std::optional<std::string> string_value(const std::string& key) const;

  // `enable_metrics` is true.
  bool metrics_enabled() const;

  // Metrics endpoints from the listener lists named by `keys` (the first key present is used): listeners of
  // `type: metrics` first, then http listeners serving the `metrics` resource, each in config order. Problems with
  // individual listeners go to `problems`.
  std::vector<MetricsEndpoint> metrics_endpoints(const std::vector<std::string>& keys,
                                                 std::vector<std::string>& problems) const;

  bool empty() const { return top_.empty(); }

 private:
  std::map<std::string, YAML::Node> top_;
};

// "0.0.0.0", "::" and "" listen on every address: scrape loopback. IPv6 literals get brackets.
std::string metrics_host(std::string_view bind_address);

}  // namespace sp
