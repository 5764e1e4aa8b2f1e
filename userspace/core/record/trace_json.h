// A recording as a Chrome trace (trace.json.gz of `synapse-profiler record`) for Perfetto or chrome://tracing: one
// timeline on which a GC pause and the queries, lock waits and disk requests it coincided with can be seen together.
// Written as the events arrive (nothing is held back but the tracks already named and the disk lanes in use), so a
// recording of any length writes in constant memory; gzip-compressed, which both viewers open as it is.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/model/events.h"

namespace sp {

// Where the trace's bytes go.
class TraceOutput {
 public:
  virtual ~TraceOutput() = default;
  virtual void write(std::string_view bytes) = 0;
  // Flushes and closes; false (with the reason) when anything written was lost.
  virtual bool close(std::string& error) = 0;
};

// Into a std::ostream, uncompressed (tests, or a plain trace.json).
class OstreamTraceOutput : public TraceOutput {
 public:
  explicit OstreamTraceOutput(std::ostream& out) : out_(out) {}
  void write(std::string_view bytes) override { out_.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); }
  bool close(std::string& error) override;

 private:
  std::ostream& out_;
};

// A gzip file (zlib's gzFile behind a buffer of its own): closed properly, the file is a complete gzip member.
class GzipTraceOutput : public TraceOutput {
 public:
  // nullptr with `error` set when the file cannot be created.
  static std::unique_ptr<GzipTraceOutput> open(const std::string& path, std::string& error, int level = 6);
  ~GzipTraceOutput() override;
  void write(std::string_view bytes) override;
  bool close(std::string& error) override;
  std::uint64_t bytes_in() const { return bytes_in_; }

 private:
  GzipTraceOutput(void* file, std::string path) : file_(file), path_(std::move(path)) {}
  bool flush_buffer();
  void* file_;  // gzFile
  std::string path_;
  std::string buffer_;
  std::uint64_t bytes_in_ = 0;
  bool failed_ = false;
};

// Chrome trace event format (JSON object form): one process per worker (GC and per-thread query tracks, scraped
// counters), one per worker's PostgreSQL backends (server-side execution and lock waits), one per disk (requests on
// lanes, each with its device stage nested). Timestamps in microseconds from the recording's start; processes and
// threads are named by metadata events the first time they appear.
class TraceStream {
 public:
  explicit TraceStream(TraceOutput& out) : out_(out) {}
  void begin(std::uint64_t start_ns, std::chrono::system_clock::time_point wall);
  void gc(const GcPause& g);
  void query(const QueryEvent& q);
  void lock_wait(const LockWait& l);
  void io(const IoEvent& e);
  void scrape(const SynapseScrape& s);
  // Ends the JSON (otherData with the counts after the events) and closes the output.
  bool finish(std::uint64_t events, std::uint64_t dropped, std::uint64_t max_events, std::string& error);

 private:
  void event(std::string_view body);
  int worker_pid(const WorkerLabels& w);
  int device_pid(const std::string& device);
  void process(int pid, const std::string& name);
  void thread(int pid, std::uint64_t tid, const std::string& name);
  void slice(int pid, std::uint64_t tid, std::string_view name, const char* cat, std::uint64_t start_ns,
             std::uint64_t end_ns, std::string_view args);
  std::string ts(std::uint64_t at_ns) const;
  std::uint64_t lane(const std::string& device, std::uint64_t start_ns, std::uint64_t end_ns);

  TraceOutput& out_;
  std::uint64_t start_ns_ = 0;
  std::string wall_;
  std::string line_;  // reused for each event
  std::map<WorkerLabels, int> worker_pid_;
  std::map<std::string, int> device_pid_;
  std::set<std::pair<int, std::uint64_t>> named_;
  // Per device, per lane: the recent requests on it (start, end), to place an overlapping one on another lane.
  std::map<std::string, std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>>> lanes_;
  std::map<std::string, std::uint64_t> newest_start_;
};

}  // namespace sp
