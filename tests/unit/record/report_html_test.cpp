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
