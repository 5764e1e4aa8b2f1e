// The Chrome trace of a sample recording: valid JSON, every slice on a named track, times and lanes as recorded.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "../../common/gunzip.h"
#include "core/record/recording.h"
#include "core/record/summary.h"
#include "core/record/trace_json.h"
#include "sample_recording.h"

using sp::test::sample;

TEST(TraceJson, TraceIsValidJsonWithEverySliceOnItsTrack) {
  sp::test::StringTrace trace;
  sp::Recording r = sample(trace.stream());
  auto doc = nlohmann::json::parse(trace.finish(r));  // throws (fails the test) on invalid JSON
  ASSERT_TRUE(doc["traceEvents"].is_array());
  std::map<int, std::string> process;
  std::map<std::pair<int, long long>, std::string> thread;
  std::map<std::string, int> slices_per_cat;
  for (const auto& e : doc["traceEvents"]) {
    const std::string ph = e["ph"];
    ASSERT_TRUE(ph == "M" || ph == "X" || ph == "C" || ph == "i") << e.dump();
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
      EXPECT_EQ(e["args"].value("collected", -1), 42) << e.dump();
      found = true;
    }
    if (e["ph"] == "X" && e["cat"] == "db_client") {
      // value(): a const json's operator[] on a missing key is undefined (an assertion in debug builds).
      EXPECT_EQ(e["args"].value("fingerprint_id", std::string()), "abcdef") << e.dump();
      if (e["args"].value("desc", std::string()) == "persist_events") {
        EXPECT_EQ(e["name"], "persist_events: SELECT users");
      }
    }
    if (e["ph"] == "C") {
      EXPECT_DOUBLE_EQ(e["args"].value("seconds", -1.0), 12.5) << e.dump();
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

namespace {

using sp::test::gunzip;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()))).string();
}

}  // namespace

// trace.json.gz: a gzip file that decompresses to the same JSON, at a small fraction of the bytes per event.
TEST(TraceJson, GzipTraceRoundTripsAndStaysSmall) {
  const std::string path = temp_path("sp-trace-test.json.gz");
  std::string error;
  auto out = sp::GzipTraceOutput::open(path, error);
  ASSERT_TRUE(out) << error;
  sp::TraceStream trace(*out);
  sp::Recording r;
  r.set_trace(&trace);
  r.start(sp::test::kT0, {});
  // 20 s of one worker at 500 client calls/s with their server statements, over a few dozen statements and
  // transactions, as a real worker's are.
  constexpr int kCalls = 10'000;
  for (int i = 0; i < kCalls; ++i) {
    const std::uint64_t at = static_cast<std::uint64_t>(i) * 2'000'000 + static_cast<std::uint64_t>(i % 7) * 13'171;
    sp::QueryEvent q = sp::test::query(sp::test::kSync, 100 + i % 10, 0, 0, false,
                                       fmt::format("SELECT event_id, stream_ordering FROM events_{} WHERE room_id = "
                                                   "$1 AND stream_ordering > $2 ORDER BY stream_ordering LIMIT $3",
                                                   i % 40));
    q.start_ns = sp::test::kT0 + at;
    q.end_ns = q.start_ns + 180'000 + static_cast<std::uint64_t>(i % 97) * 1'311;
    q.fingerprint_id = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(i % 40 + 1);
    q.desc = fmt::format("get_events_{}", i % 25);
    q.conn = 0x5555deadbe00ULL + static_cast<std::uint64_t>(i % 10) * 0x40;
    ASSERT_TRUE(r.add_query(q));
    sp::QueryEvent server = q;
    server.server_side = true;
    server.tgid = 900 + static_cast<std::uint32_t>(i % 10);
    server.start_ns += 40'000;
    server.end_ns -= 30'000;
    ASSERT_TRUE(r.add_query(server));
  }
  r.finish(sp::test::kT0 + 61'000'000'000ULL);
  ASSERT_TRUE(trace.finish(r.events(), r.dropped(), r.max_events(), error)) << error;
  const std::uint64_t plain_bytes = out->bytes_in();
  out.reset();

  std::ifstream raw(path, std::ios::binary);
  unsigned char magic[2] = {};
  raw.read(reinterpret_cast<char*>(magic), 2);
  EXPECT_EQ(magic[0], 0x1f);
  EXPECT_EQ(magic[1], 0x8b);
  const std::string text = gunzip(path);
  EXPECT_EQ(text.size(), plain_bytes);
  auto doc = nlohmann::json::parse(text);
  std::size_t slices = 0;
  for (const auto& e : doc["traceEvents"]) slices += e["ph"] == "X";
  EXPECT_EQ(slices, 2u * kCalls);
  EXPECT_EQ(doc["otherData"]["events"], 2 * kCalls);
  EXPECT_EQ(doc["otherData"]["dropped"], 0);
  const double per_event = static_cast<double>(std::filesystem::file_size(path)) / (2.0 * kCalls);
  EXPECT_LT(per_event, 40.0) << "compressed bytes per event";
  std::filesystem::remove(path);
}

// The cap: events after it are not written (the trace says how many), the summary still counts them, and the trace
// starts with the recording's start at time 0.
TEST(TraceJson, CapStopsTheTraceNotTheSummary) {
  sp::test::StringTrace trace;
  sp::Recording r(3);
  r.set_trace(trace.stream());
  r.start(sp::test::kT0, {});
  for (std::uint64_t i = 0; i < 5; ++i) r.add_gc(sp::test::gc(sp::test::kSync, 10 * i, 10 * i + 5));
  r.finish(sp::test::kT0 + 100 * sp::test::kMs);
  auto doc = nlohmann::json::parse(trace.finish(r));
  EXPECT_EQ(doc["traceEvents"][0]["ph"], "i");
  EXPECT_EQ(doc["traceEvents"][0]["ts"], 0);
  std::size_t slices = 0;
  for (const auto& e : doc["traceEvents"]) slices += e["ph"] == "X";
  EXPECT_EQ(slices, 3u);
  EXPECT_EQ(doc["otherData"]["events"], 3);
  EXPECT_EQ(doc["otherData"]["dropped"], 2);
  const auto s = sp::summarize(r);
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].gc.count, 5u);
  EXPECT_NE(sp::render_summary_text(s).find("stopped after 3 events, 2 events not written"), std::string::npos)
      << sp::render_summary_text(s);
}
