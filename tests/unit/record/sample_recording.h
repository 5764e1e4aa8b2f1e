// Synthetic events and one sample recording shared by the record tests (model, trace, summary, report): two workers,
// GC pauses overlapping a query, a lock wait, overlapping disk requests and a scrape, at times easy to check by hand.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>

#include "core/record/recording.h"
#include "core/record/trace_json.h"

namespace sp::test {

inline constexpr std::uint64_t kMs = 1'000'000;
inline constexpr std::uint64_t kT0 = 1'000'000 * kMs;  // the recording's start on CLOCK_MONOTONIC
inline const sp::WorkerLabels kSync{"synchrotron1", "synapse.app.generic_worker"};
inline const sp::WorkerLabels kMain{"master", "synapse.app.homeserver"};

inline sp::QueryEvent query(const sp::WorkerLabels& w, std::uint32_t tid, std::uint64_t start_ms, std::uint64_t end_ms,
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

inline sp::RecordedGc gc(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t end_ms, int gen = 0) {
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

inline sp::IoEvent io(const sp::WorkerLabels& w, std::uint64_t start_ms, std::uint64_t issue_ms, std::uint64_t end_ms) {
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

// With `trace`, the events are also written to it (its finish() is the caller's).
inline sp::Recording sample(sp::TraceStream* trace = nullptr) {
  sp::Recording r;
  r.set_trace(trace);
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

// A recording's trace written uncompressed into a string, for tests to parse.
class StringTrace {
 public:
  StringTrace() : out_(text_), stream_(out_) {}
  sp::TraceStream* stream() { return &stream_; }
  // Finishes the trace with the recording's counts and returns its text.
  std::string finish(const sp::Recording& r) {
    std::string error;
    EXPECT_TRUE(stream_.finish(r.events(), r.dropped(), r.max_events(), error)) << error;
    return text_.str();
  }

 private:
  std::ostringstream text_;
  sp::OstreamTraceOutput out_;
  sp::TraceStream stream_;
};

}  // namespace sp::test
