// Per-desc pieces that need no kernel: the libpq/Synapse ratio over scrapes, the reading of Synapse's per-desc
// transaction time, desc sanitising, and the db_desc_* exposition (top-N, unattributed, unknown, escaping).
#include <gtest/gtest.h>

#include "core/model/db_stats.h"
#include "core/correlate/desc_ratio.h"
#include "core/scrape/prom_text.h"
#include "exporter/metric_builders.h"
#include "exporter/probe_metrics.h"

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kSec = 1'000 * kMs;
const sp::WorkerLabels kW{"w1", "synapse.app.generic_worker"};

}  // namespace

TEST(DescRatio, ReadsSynapsesTransactionSecondsPerDesc) {
  auto parsed = sp::prom::parse_prometheus_text(
      "# HELP synapse_storage_transaction_time_sum_total x\n"
      "# TYPE synapse_storage_transaction_time_sum_total counter\n"
      "synapse_storage_transaction_time_sum_total{desc=\"a\"} 1.5\n"
      "synapse_storage_transaction_time_sum_total{desc=\"b\",server_name=\"x\"} 2\n"
      "synapse_storage_transaction_time_sum_total{desc=\"b\",server_name=\"y\"} 3\n"
      "synapse_storage_transaction_time_count_total{desc=\"a\"} 7\n");
  ASSERT_TRUE(parsed.error.empty()) << parsed.error;
  auto m = sp::transaction_seconds_by_desc(parsed.families);
  EXPECT_EQ(m, (std::map<std::string, double>{{"a", 1.5}, {"b", 5}}));
}

TEST(DescRatio, IncreaseOfProbeTimeOverIncreaseOfSynapseTimeAtEachScrapesOwnTime) {
  sp::DescLibpqRatio r(60 * kSec, 10 * kSec);
  r.tick(1 * kSec);
  r.add_scrape(kW, 1 * kSec, {{"a", 10.0}});
  r.add_query(kW, "a", 2 * kSec, 300 * kMs);
  r.add_query(kW, "a", 3 * kSec, 100 * kMs);
  // Ends after the second scrape's time, arrives before it settles: must not count.
  r.add_query(kW, "a", 4 * kSec + 1, 900 * kMs);
  r.add_scrape(kW, 4 * kSec, {{"a", 10.5}});  // pending: no tick has reached 4 s yet
  EXPECT_TRUE(r.snapshot().empty());
  r.tick(4 * kSec + 2);
  auto s = r.snapshot();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_NEAR((s[{kW, "a"}]), 0.4 / 0.5, 1e-9);
}

TEST(DescRatio, DescsWithoutSynapseGrowthOrAfterAResetStartOver) {
  sp::DescLibpqRatio r(60 * kSec, 10 * kSec);
  r.tick(1 * kSec);
  r.add_scrape(kW, 1 * kSec, {{"a", 5.0}, {"idle", 1.0}});
  r.add_query(kW, "a", 2 * kSec, 500 * kMs);
  r.tick(3 * kSec);
  r.add_scrape(kW, 3 * kSec, {{"a", 6.0}, {"idle", 1.0}});
  auto s = r.snapshot();
  EXPECT_NEAR((s[{kW, "a"}]), 0.5, 1e-9);
  EXPECT_FALSE(s.count({kW, "idle"}));  // Synapse spent no time in it: no ratio rather than a division by zero
  // The worker restarted: its counter fell. Only the intervals after the reset count.
  r.add_query(kW, "a", 4 * kSec, 100 * kMs);
  r.tick(5 * kSec);
  r.add_scrape(kW, 5 * kSec, {{"a", 0.2}});
  EXPECT_FALSE(r.snapshot().count({kW, "a"}));
  r.add_query(kW, "a", 6 * kSec, 100 * kMs);
  r.tick(7 * kSec);
  r.add_scrape(kW, 7 * kSec, {{"a", 0.4}});
  EXPECT_NEAR((r.snapshot()[{kW, "a"}]), 0.5, 1e-9);
  r.forget(kW);
  EXPECT_TRUE(r.snapshot().empty());
}

TEST(DescSanitize, KeepsPrintableAsciiAndBoundsTheLength) {
  EXPECT_EQ(sp::sanitize_desc("get_users_in_room"), "get_users_in_room");
  EXPECT_EQ(sp::sanitize_desc(""), "");
  EXPECT_EQ(sp::sanitize_desc(std::string_view("a b\n\x01\x7f\xff", 7)), "a_b____");
  EXPECT_EQ(sp::sanitize_desc(std::string(100, 'x')).size(), 63u);
}

TEST(DescMetrics, TopDescsByTimeKeepTheirNameTheRestAreOtherAndLabelsAreEscaped) {
  sp::DbClientSnapshot snap;
  const sp::WorkerLabels w2{"w2", "synapse.app.generic_worker"};
  snap.desc[{kW, "persist_events"}] = {10, 5 * kSec};
  snap.desc[{w2, "persist_events"}] = {1, 1 * kSec};
  snap.desc[{kW, "get_users_in_room"}] = {20, 2 * kSec};
  snap.desc[{kW, "tiny_a"}] = {3, 1 * kMs};
  snap.desc[{kW, "tiny\"b"}] = {4, 2 * kMs};
  snap.desc[{kW, ""}] = {7, 70 * kMs};
  snap.desc[{kW, "unknown"}] = {2, 20 * kMs};
  snap.desc_walks[{kW, "found"}] = 38;
  snap.desc_walks[{kW, "no_frame"}] = 7;
  std::map<std::pair<sp::WorkerLabels, std::string>, double> ratio{{{kW, "persist_events"}, 0.75},
                                                                    {{kW, "tiny_a"}, 0.5}};
  std::string t = sp::exporter::to_text(sp::exporter::db_desc_metrics(snap, 2, ratio));
  const std::string l = "worker=\"w1\",worker_app=\"synapse.app.generic_worker\"";
  auto has = [&](const std::string& s) { return t.find(s + "\n") != std::string::npos; };
  EXPECT_TRUE(has("synapse_profiler_db_desc_queries_total{" + l + ",desc=\"persist_events\"} 10")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_queries_total{worker=\"w2\",worker_app=\"synapse.app.generic_worker\","
                  "desc=\"persist_events\"} 1"))
      << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_queries_total{" + l + ",desc=\"get_users_in_room\"} 20")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_queries_total{" + l + ",desc=\"other\"} 7")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_query_seconds_total{" + l + ",desc=\"other\"} 0.003")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_queries_total{" + l + ",desc=\"unattributed\"} 7")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_queries_total{" + l + ",desc=\"unknown\"} 2")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_query_seconds_total{" + l + ",desc=\"persist_events\"} 5")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_lookups_total{" + l + ",result=\"no_frame\"} 7")) << t;
  EXPECT_TRUE(has("synapse_profiler_db_desc_libpq_ratio{" + l + ",desc=\"persist_events\"} 0.75")) << t;
  EXPECT_EQ(t.find("tiny"), std::string::npos) << "names beyond the top N never appear, not even as a ratio\n" << t;

  // With room for every name, a quote in one is escaped, not passed through.
  t = sp::exporter::to_text(sp::exporter::db_desc_metrics(snap, 50, ratio));
  EXPECT_NE(t.find("desc=\"tiny\\\"b\"} 4\n"), std::string::npos) << t;
}
