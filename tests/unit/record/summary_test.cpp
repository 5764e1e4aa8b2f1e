// The summary of a sample recording: its numbers and findings, and the nearest-rank percentiles behind them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/record/recording.h"
#include "core/record/summary.h"
#include "sample_recording.h"

using sp::test::kSync;
using sp::test::sample;

TEST(Summary, SummaryNumbersAndFindings) {
  auto s = sp::summarize(sample());
  EXPECT_DOUBLE_EQ(s.span_s, 1.0);
  ASSERT_EQ(s.workers.size(), 2u);
  const sp::WorkerSummary& w = s.workers[1].worker == kSync ? s.workers[1] : s.workers[0];
  EXPECT_EQ(w.gc.count, 2u);
  EXPECT_NEAR(w.gc.total_s, 0.2, 1e-9);
  EXPECT_NEAR(w.gc_share, 0.2, 1e-9);
  EXPECT_EQ(w.client.count, 2u);
  EXPECT_NEAR(w.client_share, 0.4, 1e-9);  // [50, 350) and [400, 500)
  EXPECT_NEAR(w.server_share, 0.24, 1e-9);
  EXPECT_NEAR(w.query_gc_overlap_s, 0.1, 1e-9);
  EXPECT_EQ(w.lock_waits.count, 1u);
  EXPECT_EQ(w.io_requests, 2u);
  EXPECT_NEAR(w.disk_share, 0.02, 1e-9);  // [10, 30)
  ASSERT_EQ(w.top_fingerprints.size(), 2u);
  EXPECT_EQ(w.top_fingerprints[0].fingerprint, "SELECT * FROM users WHERE name = $1");
  EXPECT_NEAR(w.top_fingerprints[0].time.p99_s, 0.3, 1e-9);
  ASSERT_EQ(w.top_transactions.size(), 2u);
  EXPECT_EQ(w.top_transactions[0].fingerprint, "persist_events");
  EXPECT_EQ(w.top_transactions[1].fingerprint, "unattributed");
  ASSERT_EQ(s.devices.size(), 1u);
  EXPECT_EQ(s.devices[0].requests, 3u);
  EXPECT_NEAR(s.devices[0].device_time.max_s, 0.014, 1e-9);
  bool overlap_finding = false;
  for (const auto& f : s.findings) overlap_finding |= f.find("25.0 % of synchrotron1's query time overlapped") == 0;
  EXPECT_TRUE(overlap_finding) << s.findings.front();
  const std::string text = sp::render_summary_text(s);
  EXPECT_NE(text.find("25.0 % of synchrotron1's query time overlapped GC pauses"), std::string::npos) << text;
}

TEST(Summary, DistributionUsesNearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 200; ++i) v.push_back(i);
  auto d = sp::distribution_of(v);
  EXPECT_EQ(d.count, 200u);
  EXPECT_DOUBLE_EQ(d.p50_s, 100);
  EXPECT_DOUBLE_EQ(d.p99_s, 198);
  EXPECT_DOUBLE_EQ(d.max_s, 200);
  EXPECT_DOUBLE_EQ(d.mean_s, 100.5);
  EXPECT_EQ(sp::distribution_of({}).count, 0u);
}
