// The recording's event sink: which workers' events it keeps, what it copies of each, and its running counts.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/model/db_stats.h"
#include "core/record/recording_sink.h"
#include "core/record/summary.h"
#include "sample_recording.h"

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kT0 = 1'000'000 * kMs;  // the recording's start on CLOCK_MONOTONIC
const sp::WorkerLabels kSync{"synchrotron1", "synapse.app.generic_worker"};
const sp::WorkerLabels kMain{"master", "synapse.app.homeserver"};

sp::GcPause pause(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t end_ms) {
  sp::GcPause p;
  p.worker = w;
  p.tgid = 100;
  p.tid = 101;
  p.start_ns = kT0 + start_ms * kMs;
  p.end_ns = kT0 + end_ms * kMs;
  p.generation = 2;
  p.collected = 1234;
  return p;
}

sp::QueryEvent query(const sp::WorkerLabels& w, bool server_side, std::uint64_t start_ms, std::uint64_t end_ms) {
  sp::QueryEvent q;
  q.worker = w;
  q.server_side = server_side;
  q.tgid = server_side ? 900 : 100;
  q.tid = server_side ? 900 : 102;
  q.start_ns = kT0 + start_ms * kMs;
  q.end_ns = kT0 + end_ms * kMs;
  q.verb = "SELECT";
  q.fingerprint = "SELECT * FROM users WHERE name = $1";
  return q;
}

sp::LockWait lock_wait(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t end_ms) {
  sp::LockWait l;
  l.worker = w;
  l.backend = 900;
  l.start_ns = kT0 + start_ms * kMs;
  l.end_ns = kT0 + end_ms * kMs;
  return l;
}

sp::IoEvent io(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t end_ms) {
  sp::IoEvent e;
  e.worker = w;
  e.via = "postgres";
  e.device = "vda";
  e.op = "read";
  e.bytes = 8192;
  e.start_ns = kT0 + start_ms * kMs;
  e.issue_ns = e.start_ns;
  e.complete_ns = kT0 + end_ms * kMs;
  return e;
}

sp::SynapseScrape scrape(const sp::WorkerLabels& w, std::uint64_t at_ms, double query_time_sum) {
  sp::SynapseScrape s;
  s.worker = w;
  s.at_ns = kT0 + at_ms * kMs;
  s.counters.query_time_sum = query_time_sum;
  return s;
}

// One event of every kind for `w`.
void feed(sp::EventSink& sink, const sp::WorkerLabels& w) {
  sink.gc_pause(pause(w, 10, 20));
  sink.query(query(w, false, 30, 40));
  sink.query(query(w, true, 31, 39));
  sink.lock_wait(lock_wait(w, 32, 35));
  sink.io_request(io(w, 50, 60));
  sink.synapse_scrape(scrape(w, 100, 2.5));
}

}  // namespace

namespace {

// The trace a recording wrote, parsed back: its slices per category, and its counter events.
struct Written {
  std::map<std::string, std::vector<nlohmann::json>> slices;  // by category
  std::vector<nlohmann::json> counters;
  std::set<std::string> processes;
};
Written written(const std::string& text) {
  Written w;
  auto doc = nlohmann::json::parse(text);
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == "X") w.slices[e["cat"]].push_back(e);
    if (e["ph"] == "C") w.counters.push_back(e);
    if (e["ph"] == "M" && e["name"] == "process_name") w.processes.insert(e["args"]["name"]);
  }
  return w;
}

}  // namespace

TEST(RecordingSink, KeepsOnlyTheNamedWorkersAndCopiesEveryField) {
  sp::test::StringTrace trace;
  sp::Recording recording;
  recording.set_trace(trace.stream());
  recording.start(kT0, std::chrono::system_clock::now());
  sp::RecordingSink sink(recording, {"synchrotron1"});
  feed(sink, kSync);
  feed(sink, kMain);
  feed(sink, sp::kOtherWorker);
  recording.finish(kT0 + 1000 * kMs);
  const Written w = written(trace.finish(recording));

  EXPECT_EQ(w.processes, (std::set<std::string>{"worker synchrotron1 (synapse.app.generic_worker)",
                                                "PostgreSQL for synchrotron1", "disk vda"}));
  ASSERT_EQ(w.slices.at("gc").size(), 1u);
  const auto& g = w.slices.at("gc")[0];
  EXPECT_EQ(g["name"], "gc gen 2");
  EXPECT_DOUBLE_EQ(g["ts"].get<double>(), 10'000);
  EXPECT_DOUBLE_EQ(g["dur"].get<double>(), 10'000);
  EXPECT_EQ(g["args"]["generation"], 2);
  EXPECT_EQ(g["args"]["collected"], 1234);
  ASSERT_EQ(w.slices.at("db_client").size(), 1u);
  EXPECT_EQ(w.slices.at("db_client")[0]["tid"], 102);
  ASSERT_EQ(w.slices.at("db_server").size(), 1u);
  EXPECT_EQ(w.slices.at("db_server")[0]["tid"], 900);
  ASSERT_EQ(w.slices.at("db_lock").size(), 1u);
  EXPECT_DOUBLE_EQ(w.slices.at("db_lock")[0]["ts"].get<double>(), 32'000);
  EXPECT_DOUBLE_EQ(w.slices.at("db_lock")[0]["dur"].get<double>(), 3'000);
  ASSERT_EQ(w.slices.at("disk").size(), 2u) << "the request and its device stage";
  EXPECT_EQ(w.slices.at("disk")[0]["args"]["worker"], "synchrotron1");
  ASSERT_EQ(w.counters.size(), 1u);
  EXPECT_DOUBLE_EQ(w.counters[0]["ts"].get<double>(), 100'000);
  EXPECT_DOUBLE_EQ(w.counters[0]["args"]["seconds"].get<double>(), 2.5);

  // The summary saw the same events.
  const auto s = sp::summarize(recording);
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].worker, kSync);
  EXPECT_EQ(s.workers[0].gc.count, 1u);
  EXPECT_EQ(s.workers[0].gc_per_generation.at(2), 1u);
  EXPECT_EQ(s.workers[0].client.count, 1u);
  EXPECT_EQ(s.workers[0].server.count, 1u);
  EXPECT_EQ(s.workers[0].lock_waits.count, 1u);
  EXPECT_EQ(s.workers[0].io_requests, 1u);

  const auto c = sink.counts();
  EXPECT_EQ(c.gc, 1u);
  EXPECT_EQ(c.queries, 1u);
  EXPECT_EQ(c.server, 2u);  // the server-side statement and the lock wait
  EXPECT_EQ(c.io, 1u);
  EXPECT_EQ(c.dropped, 0u);
}

TEST(RecordingSink, WithNoWorkerNamedKeepsEveryWorkerButOther) {
  sp::test::StringTrace trace;
  sp::Recording recording;
  recording.set_trace(trace.stream());
  recording.start(kT0, std::chrono::system_clock::now());
  sp::RecordingSink sink(recording, {});
  feed(sink, kSync);
  feed(sink, kMain);
  feed(sink, sp::kOtherWorker);
  EXPECT_EQ(recording.events(), 10u);  // five per worker
  const Written w = written(trace.finish(recording));
  EXPECT_EQ(w.counters.size(), 2u);
  for (const auto& p : w.processes) EXPECT_EQ(p.find(sp::kOtherWorker.worker), std::string::npos) << p;
  EXPECT_EQ(w.processes.size(), 5u);  // two workers, their PostgreSQL backends, the disk
  const auto c = sink.counts();
  EXPECT_EQ(c.gc + c.queries + c.server + c.io, 10u);
}

// Counts follow what the recording took: an event before its start is neither counted nor dropped; past the cap,
// events are dropped and the count says so.
TEST(RecordingSink, CountsWhatTheRecordingTookAndWhatItDropped) {
  sp::Recording recording(3);
  recording.start(kT0, std::chrono::system_clock::now());
  sp::RecordingSink sink(recording, {});
  sp::GcPause before = pause(kSync, 0, 0);
  before.start_ns = kT0 - 20 * kMs;
  before.end_ns = kT0 - 10 * kMs;
  sink.gc_pause(before);
  EXPECT_EQ(sink.counts().gc, 0u);
  EXPECT_EQ(sink.counts().dropped, 0u);

  sink.gc_pause(pause(kSync, 10, 20));
  sink.query(query(kSync, false, 30, 40));
  sink.io_request(io(kSync, 50, 60));
  sink.query(query(kSync, true, 31, 39));   // the fourth event: over the cap
  sink.lock_wait(lock_wait(kSync, 32, 35));  // and the fifth
  const auto c = sink.counts();
  EXPECT_EQ(c.gc, 1u);
  EXPECT_EQ(c.queries, 1u);
  EXPECT_EQ(c.io, 1u);
  EXPECT_EQ(c.server, 0u);
  EXPECT_EQ(c.dropped, 2u);
  EXPECT_EQ(recording.dropped(), 2u);
}
