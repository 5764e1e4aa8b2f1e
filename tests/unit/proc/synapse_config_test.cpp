// Merging Synapse config files and reading worker identity and metrics listeners from them.
#include "core/proc/synapse_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

SynapseConfig load(std::initializer_list<const char*> files) {
  SynapseConfig config;
  for (const char* text : files) {
    std::string reason;
    EXPECT_TRUE(config.merge_file(text, reason)) << reason;
  }
  return config;
}

std::vector<std::string> urls(const SynapseConfig& config, const std::vector<std::string>& keys) {
  std::vector<std::string> problems;
  std::vector<std::string> out;
  for (const auto& endpoint : config.metrics_endpoints(keys, problems)) out.push_back(endpoint.url);
  EXPECT_THAT(problems, IsEmpty());
  return out;
}

TEST(SynapseConfig, LaterFilesReplaceTopLevelKeysOnly) {
  const auto config = load({"worker_name: a\nenable_metrics: false\nlisteners: [{type: metrics, port: 1}]\n",
                            "enable_metrics: yes\n",
                            "worker_name: b\nlisteners: [{type: metrics, port: 2, bind_address: '10.1.2.3'}]\n"});
  EXPECT_EQ(config.string_value("worker_name"), "b");
  EXPECT_TRUE(config.metrics_enabled());
  EXPECT_THAT(urls(config, {"listeners"}), ElementsAre("http://10.1.2.3:2/_synapse/metrics"));
}

TEST(SynapseConfig, RejectedFilesLeaveTheConfigUnchanged) {
  SynapseConfig config = load({"worker_name: kept\n"});
  std::string reason;
  EXPECT_FALSE(config.merge_file("worker_name: [unclosed\npassword: SECRET", reason));
  EXPECT_THAT(reason, HasSubstr("malformed YAML at line"));
  EXPECT_THAT(reason, Not(HasSubstr("SECRET")));
  EXPECT_FALSE(config.merge_file("- a\n- b\n", reason));
  EXPECT_EQ(reason, "empty or not a key-value map");
  EXPECT_FALSE(config.merge_file("", reason));
  EXPECT_FALSE(config.merge_file("just a scalar", reason));
  EXPECT_EQ(config.string_value("worker_name"), "kept");
}

TEST(SynapseConfig, StringValues) {
  const auto config = load({"worker_name:\nworker_app: ''\nlist: [a]\nmap: {a: 1}\nnum: 5\n"});
  EXPECT_EQ(config.string_value("worker_name"), std::nullopt);
  EXPECT_EQ(config.string_value("worker_app"), std::nullopt);
  EXPECT_EQ(config.string_value("list"), std::nullopt);
  EXPECT_EQ(config.string_value("map"), std::nullopt);
  EXPECT_EQ(config.string_value("num"), "5");
  EXPECT_EQ(config.string_value("absent"), std::nullopt);
}

TEST(SynapseConfig, MetricsEnabledNeedsATrueBoolean) {
  EXPECT_FALSE(load({"a: 1\n"}).metrics_enabled());
  EXPECT_FALSE(load({"enable_metrics: maybe\n"}).metrics_enabled());
  EXPECT_FALSE(load({"enable_metrics: [true]\n"}).metrics_enabled());
  EXPECT_TRUE(load({"enable_metrics: True\n"}).metrics_enabled());
}

TEST(SynapseConfig, MetricsListenersAndBindAddresses) {
  const auto config = load({R"(
worker_listeners:
  - {type: http, port: 8083, resources: [{names: [client]}]}
  - {type: http, port: 9101, bind_addresses: ['::'], resources: [{names: [client]}, {names: [metrics]}]}
  - {type: http, port: 9102, tls: true, bind_addresses: ['2001:db8::1', '0.0.0.0'], resources: [{names: metrics}]}
  - {type: metrics, port: 9000}
  - {type: metrics, port: '9001', bind_addresses: []}
  - {type: metrics, port: 9002, bind_address: '0.0.0.0'}
  - {type: metrics, port: 9003, bind_addresses: ['::1']}
listeners:
  - {type: metrics, port: 1111}
)"});
  EXPECT_THAT(urls(config, {"worker_listeners"}),
              ElementsAre("http://127.0.0.1:9000/_synapse/metrics", "http://127.0.0.1:9001/_synapse/metrics",
                          "http://127.0.0.1:9002/_synapse/metrics", "http://[::1]:9003/_synapse/metrics",
                          "http://127.0.0.1:9101/_synapse/metrics", "https://[2001:db8::1]:9102/_synapse/metrics"));
  EXPECT_THAT(urls(config, {"listeners"}), ElementsAre("http://127.0.0.1:1111/_synapse/metrics"));
  // The first list present is the one used.
  EXPECT_EQ(urls(config, {"worker_listeners", "listeners"}).size(), 6u);
  EXPECT_THAT(urls(config, {"nothing", "listeners"}), ElementsAre("http://127.0.0.1:1111/_synapse/metrics"));
}

TEST(SynapseConfig, BadListenersAreProblemsWithoutValues) {
  const auto config = load({R"(
listeners:
  - {type: metrics}
  - {type: metrics, port: 70000}
  - {type: metrics, port: hunter2}
  - not a map
  - {type: metrics, port: 9000}
worker_listeners: {type: metrics}
)"});
  std::vector<std::string> problems;
  const auto endpoints = config.metrics_endpoints({"listeners"}, problems);
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].port, 9000);
  EXPECT_THAT(problems, ElementsAre("listeners[0]: metrics listener without a valid port",
                                    "listeners[1]: metrics listener without a valid port",
                                    "listeners[2]: metrics listener without a valid port"));
  problems.clear();
  EXPECT_THAT(config.metrics_endpoints({"worker_listeners"}, problems), IsEmpty());
  EXPECT_THAT(problems, ElementsAre("config key worker_listeners is not a list"));
}

TEST(SynapseConfig, MetricsHost) {
  EXPECT_EQ(metrics_host(""), "127.0.0.1");
  EXPECT_EQ(metrics_host("0.0.0.0"), "127.0.0.1");
  EXPECT_EQ(metrics_host("::"), "127.0.0.1");
  EXPECT_EQ(metrics_host("10.0.0.5"), "10.0.0.5");
  EXPECT_EQ(metrics_host("::1"), "[::1]");
  EXPECT_EQ(metrics_host("[::1]"), "[::1]");
}

TEST(SynapseConfig, DeepNestingIsRejectedNotACrash) {
  std::string deep(100000, '[');
  SynapseConfig config;
  std::string reason;
  EXPECT_FALSE(config.merge_file("a: " + deep, reason));
  EXPECT_THAT(reason, HasSubstr("malformed YAML"));
}

}  // namespace
}  // namespace sp
