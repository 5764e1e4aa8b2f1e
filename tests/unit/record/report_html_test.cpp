// The HTML report of a sample recording: self-contained, and escaping every text it shows.
#include <gtest/gtest.h>

#include <string>

#include "core/record/recording.h"
#include "core/record/report_html.h"
#include "core/record/summary.h"
#include "sample_recording.h"

using sp::test::kSync;
using sp::test::query;
using sp::test::sample;

TEST(ReportHtml, ReportIsSelfContainedAndEscapesWhatItShows) {
  sp::Recording r = sample();
  r.add_query(query(kSync, 103, 800, 810, false, "SELECT '<script>alert(1)</script>' & x"));
  const std::string html = sp::render_report_html(sp::summarize(r));
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no script at all, and fingerprints are escaped";
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  for (const char* external : {"http://", "https://", "src=", "@import", "url("}) {
    if (std::string(external) == "http://") {
      // The SVG namespace URI is an identifier, not a fetch.
      std::string rest = html;
      for (std::size_t p; (p = rest.find("http://www.w3.org/2000/svg")) != std::string::npos;) rest.erase(p, 26);
      EXPECT_EQ(rest.find(external), std::string::npos) << external;
    } else {
      EXPECT_EQ(html.find(external), std::string::npos) << external;
    }
  }
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Top statements by total time"), std::string::npos);
}

// What a person reads first is a picture: per worker one bar of disjoint segments spanning the recording (GC, then
// PostgreSQL executing, then a database call in flight, then disk, then the rest), then the slowest moments at their
// trace times; the tables come after.
TEST(ReportHtml, TimeBarAndSlowestMomentsComeFirst) {
  const auto s = sp::summarize(sample());
  const sp::WorkerSummary& w = s.workers[0].worker == kSync ? s.workers[0] : s.workers[1];
  // synchrotron1 over 1 s: GC [100, 200) and [600, 700) = 200 ms; server [60, 300) less GC = 140 ms; client
  // [50, 350) and [400, 500) less both = 400 - 100 - 140 = 160 ms; disk [10, 30) = 20 ms; the rest 480 ms.
  ASSERT_EQ(w.time_bar.size(), 5u);
  EXPECT_EQ(w.time_bar[0].cause, "gc");
  EXPECT_NEAR(w.time_bar[0].share, 0.2, 1e-9);
  EXPECT_EQ(w.time_bar[1].cause, "db_server");
  EXPECT_NEAR(w.time_bar[1].share, 0.14, 1e-9);
  EXPECT_EQ(w.time_bar[2].cause, "db_client");
  EXPECT_NEAR(w.time_bar[2].share, 0.16, 1e-9);
  EXPECT_EQ(w.time_bar[3].cause, "disk");
  EXPECT_NEAR(w.time_bar[3].share, 0.02, 1e-9);
  EXPECT_EQ(w.time_bar[4].cause, "other");
  EXPECT_NEAR(w.time_bar[4].share, 0.48, 1e-9);
  // The longest moment: the 300 ms query at 50 ms.
  ASSERT_FALSE(w.slowest.empty());
  EXPECT_EQ(w.slowest[0].cause, "db_client");
  EXPECT_EQ(w.slowest[0].what, "persist_events: SELECT users");
  EXPECT_DOUBLE_EQ(w.slowest[0].at_s, 0.05);
  EXPECT_DOUBLE_EQ(w.slowest[0].duration_s, 0.3);

  const std::string html = sp::render_report_html(s);
  const auto bar = html.find("aria-label=\"where the wall time of synchrotron1 went\"");
  ASSERT_NE(bar, std::string::npos);
  // The GC segment is a fifth of the bar's width.
  EXPECT_NE(html.find("width=\"152.0\" height=\"30\" fill=\"#d1495b\" data-cause=\"gc\""), std::string::npos) << html;
  const auto slowest = html.find("<tr id=\"slow-1\"><td>0.050000</td><td>300.00 ms</td><td class=\"l\">synchrotron1");
  ASSERT_NE(slowest, std::string::npos) << html;
  EXPECT_NE(html.find("ts between 49999000 and 50001000"), std::string::npos);
  const auto findings = html.find("<h2>Findings</h2>");
  const auto tables = html.find("<h2>synchrotron1 (synapse.app.generic_worker)</h2>");
  EXPECT_LT(bar, slowest);
  EXPECT_LT(slowest, findings);
  EXPECT_LT(findings, tables);
}
