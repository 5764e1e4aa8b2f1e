// libFuzzer target for reading Synapse configuration files (core/proc/synapse_config.h), which come from the profiled
// processes (possibly another container): the input is split into up to three "files" at lines "---8<---", merged in
// order as Synapse's -c options are, then a file holding a known secret is merged. Properties:
//   - merging never crashes or hangs, whatever the YAML (deep nesting, aliases, huge scalars, bad UTF-8);
//   - a failed merge leaves the configuration as it was, with a reason;
//   - no reason or listener problem ever contains the secret's value (config values stay out of messages);
//   - every metrics endpoint found has a port in 1..65535 and an http:// URL naming that port.
// Built as a real fuzzer with -DSP_FUZZ=ON (clang), otherwise as sp_fuzz_yaml_regress over tests/data/fuzz/yaml.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/proc/synapse_config.h"

namespace {

constexpr std::string_view kSecret = "sp-fuzz-secret-7f3a9c";

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s: %s\n", what, detail.c_str());
  std::abort();
}

void check_message(const std::string& msg) {
  if (msg.find(kSecret) != std::string::npos) fail("a config value leaked into a message", msg);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> files;
  std::size_t from = 0;
  while (files.size() < 2) {
    const std::size_t cut = input.find("\n---8<---\n", from);
    if (cut == std::string_view::npos) break;
    files.push_back(input.substr(from, cut - from));
    from = cut + 10;
  }
  files.push_back(input.substr(from));
  const std::string secret_file = "registration_shared_secret: " + std::string(kSecret) + "\nmacaroon_secret_key: '" +
                                  std::string(kSecret) + "'\n";
  files.push_back(secret_file);

  sp::SynapseConfig config;
  for (std::string_view f : files) {
    const bool was_empty = config.empty();
    std::string reason;
    if (!config.merge_file(f, reason)) {
      if (reason.empty()) fail("failed merge without a reason", std::string(f.substr(0, 200)));
      check_message(reason);
      if (config.empty() != was_empty) fail("a failed merge changed the configuration", reason);
    }
  }
  for (const char* key : {"worker_name", "worker_app", "registration_shared_secret"}) (void)config.string_value(key);
  (void)config.metrics_enabled();
  std::vector<std::string> problems;
  for (const auto& e : config.metrics_endpoints({"worker_listeners", "listeners"}, problems)) {
    if (e.port < 1 || e.port > 65535) fail("endpoint port out of range", e.url);
    if (e.url.rfind("http://", 0) != 0 || e.url.find(":" + std::to_string(e.port) + "/") == std::string::npos) {
      fail("endpoint URL does not name its port", e.url);
    }
  }
  for (const auto& p : problems) check_message(p);
  return 0;
}
