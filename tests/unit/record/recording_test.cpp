// Recordings from synthetic events: the cap, the trace's structure and times, the summary's numbers and findings, and
// the HTML report's self-containedness and escaping.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <sstream>

#include "core/record/recording.h"
#include "core/record/report_html.h"
#include "core/record/summary.h"
#include "core/record/trace_json.h"

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kT0 = 1'000'000 * kMs;  // the recording's start on CLOCK_MONOTONIC
const sp::WorkerLabels kSync{"synchrotron1", "synapse.app.generic_worker"};
const sp::WorkerLabels kMain{"master", "synapse.app.homeserver"};

sp::QueryEvent query(const sp::WorkerLabels& w, std::uint32_t tid, std::uint64_t start_ms, std::uint64_t end_ms,
                     bool server = false, const std::string& fp = "SELECT * FROM users WHERE name = $1") {
  sp::QueryEvent q;
  q.worker = w;
  q.server_side = server;
  q.tgid = server ? 900 : 100;
  q.tid = server ? 900 : tid;
  q.start_ns = kT0 + start_ms * kMs;
  q.end_ns = kT0 + end_ms * kMs;
  q.fingerprint = fp;
  q.fingerprint_id = 0xabcdef;
  q.verb = "SELECT";
  q.table = "users";
  return q;
}

sp::RecordedGc gc(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t end_ms, int gen = 0) {
  sp::RecordedGc g;
  g.worker = w;
  g.tgid = 100;
  g.tid = 100;
  g.start_ns = kT0 + start_ms * kMs;
  g.end_ns = kT0 + end_ms * kMs;
  g.generation = gen;
  g.collected = 42;
  return g;
}

sp::IoEvent io(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t issue_ms, std::uint64_t end_ms) {
  sp::IoEvent e;
  e.worker = w;
  e.via = "postgres";
  e.device = "vda";
  e.op = "read";
  e.bytes = 8192;
  e.start_ns = kT0 + start_ms * kMs;
  e.issue_ns = kT0 + issue_ms * kMs;
  e.complete_ns = kT0 + end_ms * kMs;
  return e;
}

sp::Recording sample() {
  sp::Recording r;
  r.start(kT0, std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000)));
  // synchrotron1: two pauses of 100 ms; a 300 ms query that a pause covers for 100 ms; a second thread's query.
  EXPECT_TRUE(r.add_gc(gc(kSync, 100, 200)));
  EXPECT_TRUE(r.add_gc(gc(kSync, 600, 700, 2)));
  sp::QueryEvent persisted = query(kSync, 101, 50, 350);
  persisted.desc = "persist_events";
  EXPECT_TRUE(r.add_query(persisted));
  EXPECT_TRUE(r.add_query(query(kSync, 102, 400, 500, false, "UPDATE users SET name = $1 WHERE id = $2")));
  EXPECT_TRUE(r.add_query(query(kSync, 0, 60, 300, true)));
  sp::RecordedLockWait l;
  l.worker = kSync;
  l.backend = 900;
  l.start_ns = kT0 + 70 * kMs;
  l.end_ns = kT0 + 90 * kMs;
  EXPECT_TRUE(r.add_lock_wait(l));
  // Two overlapping disk requests (two lanes), one of the main process.
  EXPECT_TRUE(r.add_io(io(kSync, 10, 12, 20)));
  EXPECT_TRUE(r.add_io(io(kSync, 15, 16, 30)));
  EXPECT_TRUE(r.add_io(io(kMain, 40, 41, 45)));
  sp::RecordedScrape s;
  s.worker = kSync;
  s.at_ns = kT0 + 500 * kMs;
  s.counters.query_time_sum = 12.5;
  r.add_scrape(s);
  r.finish(kT0 + 1000 * kMs);
  return r;
}

}  // namespace

TEST(Recording, TheCapDropsAndCountsLaterEvents) {
  sp::Recording r(3);
  r.start(kT0, {});
  EXPECT_TRUE(r.add_gc(gc(kSync, 1, 2)));
  EXPECT_TRUE(r.add_gc(gc(kSync, 3, 4)));
  EXPECT_TRUE(r.add_query(query(kSync, 1, 5, 6)));
  EXPECT_FALSE(r.add_query(query(kSync, 1, 7, 8)));
  EXPECT_FALSE(r.add_io(io(kSync, 9, 10, 11)));
  EXPECT_EQ(r.events(), 3u);
  EXPECT_EQ(r.dropped(), 2u);
  // Events that ended before the start are not part of the recording (and not counted as dropped).
  sp::Recording early(10);
  early.start(kT0 + 100 * kMs, {});
  EXPECT_FALSE(early.add_gc(gc(kSync, 1, 50)));
  EXPECT_EQ(early.dropped(), 0u);
}

TEST(Recording, TraceIsValidJsonWithEverySliceOnItsTrack) {
  sp::Recording r = sample();
  std::ostringstream out;
  sp::write_trace_json(r, out);
  auto doc = nlohmann::json::parse(out.str());  // throws (fails the test) on invalid JSON
  ASSERT_TRUE(doc["traceEvents"].is_array());
  std::map<int, std::string> process;
  std::map<std::pair<int, long long>, std::string> thread;
  std::map<std::string, int> slices_per_cat;
  for (const auto& e : doc["traceEvents"]) {
    const std::string ph = e["ph"];
    ASSERT_TRUE(ph == "M" || ph == "X" || ph == "C") << e.dump();
    if (ph == "M" && e["name"] == "process_name") process[e["pid"]] = e["args"]["name"];
    if (ph == "M" && e["name"] == "thread_name") thread[{e["pid"], e["tid"]}] = e["args"]["name"];
    if (ph != "X") continue;
    EXPECT_GE(e["ts"].get<double>(), 0.0) << e.dump();
    EXPECT_GE(e["dur"].get<double>(), 0.0) << e.dump();
    ++slices_per_cat[e["cat"]];
    EXPECT_TRUE(thread.count({e["pid"], e["tid"]})) << "slice on an unnamed track: " << e.dump();
  }
  EXPECT_EQ(slices_per_cat["gc"], 2);
  EXPECT_EQ(slices_per_cat["db_client"], 2);
  EXPECT_EQ(slices_per_cat["db_server"], 1);
  EXPECT_EQ(slices_per_cat["db_lock"], 1);
  EXPECT_EQ(slices_per_cat["disk"], 6) << "each request and its nested device stage";
  std::set<std::string> names;
  for (const auto& [pid, name] : process) names.insert(name);
  EXPECT_TRUE(names.count("worker synchrotron1 (synapse.app.generic_worker)"));
  EXPECT_TRUE(names.count("PostgreSQL for synchrotron1"));
  EXPECT_TRUE(names.count("disk vda"));
  // Times: the second GC pause starts 600 ms into the recording and lasts 100 ms (microseconds in the trace).
  bool found = false;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == "X" && e["name"] == "gc gen 2") {
      EXPECT_DOUBLE_EQ(e["ts"].get<double>(), 600'000.0);
      EXPECT_DOUBLE_EQ(e["dur"].get<double>(), 100'000.0);
      EXPECT_EQ(e["args"]["collected"], 42);
      found = true;
    }
    if (e["ph"] == "X" && e["cat"] == "db_client") {
      EXPECT_EQ(e["args"]["fingerprint_id"], "0000000000abcdef");
      if (e["args"]["desc"] == "persist_events") {
        EXPECT_EQ(e["name"], "persist_events: SELECT users");
      }
    }
    if (e["ph"] == "C") {
      EXPECT_DOUBLE_EQ(e["args"]["seconds"].get<double>(), 12.5);
    }
  }
  EXPECT_TRUE(found);
  // Overlapping disk requests went to two lanes.
  std::set<long long> lanes;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == "X" && e["cat"] == "disk" && e["name"] != "device") lanes.insert(e["tid"].get<long long>());
  }
  EXPECT_EQ(lanes.size(), 2u);
}

TEST(Recording, SummaryNumbersAndFindings) {
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

TEST(Recording, DistributionUsesNearestRank) {
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

TEST(Recording, ReportIsSelfContainedAndEscapesWhatItShows) {
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
