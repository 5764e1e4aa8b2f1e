#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cli/options.h"

using sp::cli::Command;
using sp::cli::parse_cli;

namespace {

sp::cli::ParseOutcome parse(std::vector<std::string> args) {
  args.insert(args.begin(), "synapse-profiler");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_cli(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST(CliOptions, DefaultsToRunWithDocumentedListenAddress) {
  auto r = parse({});
  ASSERT_TRUE(r.options) << r.message;
  EXPECT_EQ(r.options->command, Command::Run);
  EXPECT_EQ(r.options->listen, "0.0.0.0:9477");
  EXPECT_EQ(r.options->proc_root, "/proc");
  EXPECT_EQ(r.options->rescan_interval, std::chrono::seconds(5));
}

TEST(CliOptions, SubcommandsAndTheirOptions) {
  auto w = parse({"workers", "--json", "--pid", "12", "--pid", "34"});
  ASSERT_TRUE(w.options) << w.message;
  EXPECT_EQ(w.options->command, Command::Workers);
  EXPECT_TRUE(w.options->json);
  EXPECT_EQ(w.options->pids, (std::vector<int>{12, 34}));

  auto d = parse({"doctor", "--worker-name", "synchrotron1"});
  ASSERT_TRUE(d.options) << d.message;
  EXPECT_EQ(d.options->command, Command::Doctor);
  EXPECT_EQ(d.options->worker_name, "synchrotron1");

  auto run = parse({"run", "--listen", "127.0.0.1:1234", "--rescan-interval", "500ms",
                    "--metrics-url", "main=http://127.0.0.1:9000/_synapse/metrics"});
  ASSERT_TRUE(run.options) << run.message;
  EXPECT_EQ(run.options->listen, "127.0.0.1:1234");
  EXPECT_EQ(run.options->rescan_interval, std::chrono::milliseconds(500));
  EXPECT_EQ(run.options->metrics_urls.at("main"), "http://127.0.0.1:9000/_synapse/metrics");
  EXPECT_EQ(run.options->window, std::chrono::seconds(60));
  auto windowed = parse({"run", "--window", "5m"});
  ASSERT_TRUE(windowed.options) << windowed.message;
  EXPECT_EQ(windowed.options->window, std::chrono::minutes(5));
  EXPECT_EQ(run.options->forget_after, std::chrono::hours(1));
  auto forget = parse({"run", "--forget-after", "10m"});
  ASSERT_TRUE(forget.options) << forget.message;
  EXPECT_EQ(forget.options->forget_after, std::chrono::minutes(10));
  auto never = parse({"record", "-o", "/tmp/x", "--forget-after", "never"});
  ASSERT_TRUE(never.options) << never.message;
  EXPECT_FALSE(never.options->forget_after);
}

TEST(CliOptions, OptionOfAnotherCommandIsAUsageError) {
  auto r = parse({"workers", "--listen", "1.2.3.4:5"});
  EXPECT_FALSE(r.options);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("listen"), std::string::npos);
}

TEST(CliOptions, BadValuesAreUsageErrors) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"bogus"},
           {"--pid", "abc"},
           {"--pid", "-3"},
           {"--metrics-url", "noequals"},
           {"--metrics-url", "w=ftp://x"},
           {"--rescan-interval", "10ms"},
           {"--rescan-interval", "soon"},
           {"--window", "500ms"},
           {"--window", "forever"},
           {"--forget-after", "500ms"},
           {"--forget-after", "forever"},
           {"--verbose", "--quiet"},
           {"--config", "/nonexistent/synapse-profiler.conf"},
       }) {
    auto r = parse(args);
    EXPECT_FALSE(r.options) << args.front();
    EXPECT_EQ(r.exit_code, 2) << args.front();
    EXPECT_EQ(r.message.find('\n'), r.message.find("\nTry")) << "one-line error expected: " << r.message;
  }
}

TEST(CliOptions, VersionIsPrintedAndExitsZero) {
  auto v = parse({"--version"});
  EXPECT_FALSE(v.options);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.message, std::string("synapse-profiler ") + SP_VERSION);
}

TEST(CliOptions, HelpExplainsEveryOption) {
  auto top = parse({"--help"});
  EXPECT_FALSE(top.options);
  EXPECT_EQ(top.exit_code, 0);
  for (const char* word : {"run", "workers", "doctor", "--listen", "--pid", "--worker-name", "--metrics-url", "9477"}) {
    EXPECT_NE(top.message.find(word), std::string::npos) << word;
  }
  auto workers = parse({"workers", "--help"});
  EXPECT_EQ(workers.exit_code, 0);
  EXPECT_NE(workers.message.find("--json"), std::string::npos);
}

TEST(CliOptions, ConfigFileTakesTheSameOptionsAndTheCommandLineWins) {
  char path[] = "/tmp/sp-cli-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream f(path);
    f << "# comment\nlisten = 127.0.0.1:7000\npid = 42\nworker-name = fromfile\nrescan-interval = 2s\n";
  }
  auto r = parse({"run", "--config", path, "--worker-name", "fromcli"});
  std::remove(path);
  ASSERT_TRUE(r.options) << r.message;
  EXPECT_EQ(r.options->listen, "127.0.0.1:7000");
  EXPECT_EQ(r.options->pids, std::vector<int>{42});
  EXPECT_EQ(r.options->worker_name, "fromcli");
  EXPECT_EQ(r.options->rescan_interval, std::chrono::seconds(2));
}
