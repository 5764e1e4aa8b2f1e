// The recording's event sink: which workers' events it keeps, what it copies of each, and its running counts.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include "core/model/db_stats.h"
#include "core/record/recording_sink.h"

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

TEST(RecordingSink, KeepsOnlyTheNamedWorkersAndCopiesEveryField) {
  sp::Recording recording;
  recording.start(kT0, std::chrono::system_clock::now());
  sp::RecordingSink sink(recording, {"synchrotron1"});
  feed(sink, kSync);
  feed(sink, kMain);
  feed(sink, sp::kOtherWorker);

  ASSERT_EQ(recording.gcs().size(), 1u);
  const auto& g = recording.gcs()[0];
  EXPECT_EQ(g.worker, kSync);
  EXPECT_EQ(g.tgid, 100u);
  EXPECT_EQ(g.tid, 101u);
  EXPECT_EQ(g.start_ns, kT0 + 10 * kMs);
  EXPECT_EQ(g.end_ns, kT0 + 20 * kMs);
  EXPECT_EQ(g.generation, 2);
  EXPECT_EQ(g.collected, 1234);
  ASSERT_EQ(recording.queries().size(), 2u);
  EXPECT_FALSE(recording.queries()[0].server_side);
  EXPECT_TRUE(recording.queries()[1].server_side);
  EXPECT_EQ(recording.queries()[1].worker, kSync);
  ASSERT_EQ(recording.lock_waits().size(), 1u);
  const auto& l = recording.lock_waits()[0];
  EXPECT_EQ(l.worker, kSync);
  EXPECT_EQ(l.backend, 900u);
  EXPECT_EQ(l.start_ns, kT0 + 32 * kMs);
  EXPECT_EQ(l.end_ns, kT0 + 35 * kMs);
  ASSERT_EQ(recording.ios().size(), 1u);
  EXPECT_EQ(recording.ios()[0].worker, kSync);
  ASSERT_EQ(recording.scrapes().size(), 1u);
  EXPECT_EQ(recording.scrapes()[0].worker, kSync);
  EXPECT_EQ(recording.scrapes()[0].at_ns, kT0 + 100 * kMs);
  EXPECT_EQ(recording.scrapes()[0].counters.query_time_sum, 2.5);

  const auto c = sink.counts();
  EXPECT_EQ(c.gc, 1u);
  EXPECT_EQ(c.queries, 1u);
  EXPECT_EQ(c.server, 2u);  // the server-side statement and the lock wait
  EXPECT_EQ(c.io, 1u);
  EXPECT_EQ(c.dropped, 0u);
}

TEST(RecordingSink, WithNoWorkerNamedKeepsEveryWorkerButOther) {
  sp::Recording recording;
  recording.start(kT0, std::chrono::system_clock::now());
  sp::RecordingSink sink(recording, {});
  feed(sink, kSync);
  feed(sink, kMain);
  feed(sink, sp::kOtherWorker);
  EXPECT_EQ(recording.events(), 10u);  // five per worker
  EXPECT_EQ(recording.scrapes().size(), 2u);
  for (const auto& q : recording.queries()) EXPECT_NE(q.worker, sp::kOtherWorker);
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
