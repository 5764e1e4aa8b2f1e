// The Grafana dashboard (k8s/grafana/synapse-profiler.json) only queries metric names the exporter really serves:
// every name in its PromQL is declared in a live /metrics of an agent watching a Synapse-like worker with database,
// GC and disk activity (its own families and the worker's pass-through ones).
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"

using namespace std::chrono_literals;

namespace {

class GrafanaDashboardIT : public sp::test::AgentTest {
 protected:
  GrafanaDashboardIT() : AgentTest("sp-grafana-it", /*needs_postgres=*/true, {"--scrape-interval", "500ms"}) {}
};

// Every expression of every panel target, recursively (rows may nest panels).
void expressions(const nlohmann::json& panels, std::vector<std::string>& out) {
  for (const auto& p : panels) {
    if (p.contains("targets")) {
      for (const auto& t : p["targets"]) out.push_back(t["expr"]);
    }
    if (p.contains("panels")) expressions(p["panels"], out);
  }
}

}  // namespace

TEST_F(GrafanaDashboardIT, EveryMetricTheDashboardQueriesIsServed) {
  auto dash = nlohmann::json::parse(
      sp::test::read_text(std::string(SP_TEST_DATA_DIR) + "/../../k8s/grafana/synapse-profiler.json"));
  std::vector<std::string> exprs;
  expressions(dash["panels"], exprs);
  ASSERT_GE(exprs.size(), 10u);
  // The worker variable's own query too.
  exprs.push_back(dash["templating"]["list"][1]["definition"]);

  sp::test::WorkloadSpec spec;
  spec.name = "dash_worker";
  spec.duration_s = 30;
  spec.use_db = true;
  spec.extra_args = {"--gc-schedule", "0:10", "--query-rate", "20", "--io-rate", "5"};
  sp::test::Workload w(spec, dir_);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());
  auto served = [&](const std::string& m, const std::string& name) {
    return m.find("# TYPE " + name + " ") != std::string::npos;
  };
  // Wait until the worker has been scraped a few times, so the correlation families have their samples.
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        std::string m = metrics();
        return served(m, "python_twisted_reactor_tick_time") &&
               sp::test::metric_value(m, "synapse_profiler_gc_coverage_ratio", {{"worker", "dash_worker"}});
      },
      20s))
      << metrics().substr(0, 3000) << agent_log();
  const std::string m = metrics();
  std::regex name_re("\\b((synapse|python)_[a-zA-Z0-9_]+)\\b");
  std::set<std::string> names;
  for (const auto& e : exprs) {
    for (std::sregex_iterator it(e.begin(), e.end(), name_re), end; it != end; ++it) names.insert((*it)[1]);
  }
  ASSERT_GE(names.size(), 15u);
  for (const auto& n : names) {
    // A histogram's series are queried as NAME_bucket / _sum / _count; the family is declared as NAME.
    std::string family = std::regex_replace(n, std::regex("_(bucket|sum|count)$"), "");
    EXPECT_TRUE(served(m, n) || (family != n && served(m, family))) << n << " is not served";
  }
}
