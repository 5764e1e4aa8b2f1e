// The Chrome trace of a sample recording: valid JSON, every slice on a named track, times and lanes as recorded.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "core/record/recording.h"
#include "core/record/trace_json.h"
#include "sample_recording.h"

using sp::test::sample;

TEST(TraceJson, TraceIsValidJsonWithEverySliceOnItsTrack) {
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
