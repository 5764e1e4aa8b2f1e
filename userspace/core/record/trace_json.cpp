#include "core/record/trace_json.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/record/record_format.h"
#include "core/util/json.h"

namespace sp {

using record_format::query_name;
using record_format::worker_title;

bool OstreamTraceOutput::close(std::string& error) {
  out_.flush();
  if (!out_) error = "the output stream failed";
  return static_cast<bool>(out_);
}

namespace {
constexpr std::size_t kGzipBuffer = 256 * 1024;
}

std::unique_ptr<GzipTraceOutput> GzipTraceOutput::open(const std::string& path, std::string& error, int level) {
  errno = 0;
  gzFile f = gzopen(path.c_str(), fmt::format("wb{}", std::clamp(level, 1, 9)).c_str());
  if (f == nullptr) {
    error = fmt::format("cannot create {}: {}", path, errno ? std::strerror(errno) : "zlib could not allocate");
    return nullptr;
  }
  gzbuffer(f, kGzipBuffer);
  auto out = std::unique_ptr<GzipTraceOutput>(new GzipTraceOutput(f, path));
  out->buffer_.reserve(kGzipBuffer);
  return out;
}

GzipTraceOutput::~GzipTraceOutput() {
  if (file_ != nullptr) gzclose(static_cast<gzFile>(file_));
}

bool GzipTraceOutput::flush_buffer() {
  if (buffer_.empty() || failed_) {
    buffer_.clear();
    return !failed_;
  }
  const int n = gzwrite(static_cast<gzFile>(file_), buffer_.data(), static_cast<unsigned>(buffer_.size()));
  if (n <= 0 || static_cast<std::size_t>(n) != buffer_.size()) failed_ = true;
  buffer_.clear();
  return !failed_;
}

void GzipTraceOutput::write(std::string_view bytes) {
  bytes_in_ += bytes.size();
  buffer_.append(bytes);
  if (buffer_.size() >= kGzipBuffer) flush_buffer();
}

bool GzipTraceOutput::close(std::string& error) {
  if (file_ == nullptr) return !failed_;
  const bool flushed = flush_buffer();
  int errnum = 0;
  const char* msg = gzerror(static_cast<gzFile>(file_), &errnum);
  std::string why = errnum != Z_OK && msg ? msg : "";
  const int rc = gzclose(static_cast<gzFile>(file_));
  file_ = nullptr;
  if (!flushed || rc != Z_OK) {
    error = fmt::format("writing {} failed: {}", path_,
                        !why.empty() ? why : rc == Z_ERRNO ? std::strerror(errno) : "zlib error");
    return false;
  }
  return true;
}

// Timestamps: microseconds with nanosecond precision, trailing zeros dropped ("600000", "12.5", "0.001").
std::string TraceStream::ts(std::uint64_t at_ns) const {
  const std::uint64_t d = at_ns > start_ns_ ? at_ns - start_ns_ : 0;
  std::string s = fmt::format("{}", d / 1000);
  if (std::uint64_t frac = d % 1000) {
    std::string f = fmt::format("{:03}", frac);
    while (f.back() == '0') f.pop_back();
    s += "." + f;
  }
  return s;
}

void TraceStream::event(std::string_view body) {
  line_.assign(",\n");
  line_.append(body);
  out_.write(line_);
}

void TraceStream::begin(std::uint64_t start_ns, std::chrono::system_clock::time_point wall) {
  start_ns_ = start_ns;
  wall_ = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", std::chrono::floor<std::chrono::seconds>(wall));
  // The first event is the recording's start, at 0: viewers show times from the trace's first event, so trace times
  // are the report's "at ... s".
  out_.write(fmt::format(
      R"({{"displayTimeUnit":"ms","traceEvents":[)"
      "\n"
      R"({{"ph":"i","s":"g","name":"recording start {}","pid":0,"tid":0,"ts":0}})",
      wall_));
}

void TraceStream::process(int pid, const std::string& name) {
  event(fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"tid":0,"args":{{"name":{}}}}})", pid,
                    json_quote(name)));
  event(fmt::format(R"({{"ph":"M","name":"process_sort_index","pid":{},"tid":0,"args":{{"sort_index":{}}}}})", pid,
                    pid));
}

void TraceStream::thread(int pid, std::uint64_t tid, const std::string& name) {
  if (!named_.insert({pid, tid}).second) return;
  event(fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":{}}}}})", pid, tid,
                    json_quote(name)));
}

int TraceStream::worker_pid(const WorkerLabels& w) {
  auto it = worker_pid_.find(w);
  if (it != worker_pid_.end()) return it->second;
  // Workers 1.., their PostgreSQL backends 1001.., disks 2001.., in the order they first appear.
  const int pid = static_cast<int>(worker_pid_.size()) + 1;
  worker_pid_.emplace(w, pid);
  process(pid, "worker " + worker_title(w));
  process(pid + 1000, "PostgreSQL for " + w.worker);
  return pid;
}

int TraceStream::device_pid(const std::string& device) {
  auto it = device_pid_.find(device);
  if (it != device_pid_.end()) return it->second;
  const int pid = static_cast<int>(device_pid_.size()) + 2001;
  device_pid_.emplace(device, pid);
  process(pid, "disk " + device);
  return pid;
}

void TraceStream::slice(int pid, std::uint64_t tid, std::string_view name, const char* cat, std::uint64_t start_ns,
                        std::uint64_t end_ns, std::string_view args) {
  const std::uint64_t s = std::max(start_ns, start_ns_);
  const std::uint64_t e = std::max(end_ns, s);
  std::string body = fmt::format(R"({{"ph":"X","cat":"{}","name":{},"pid":{},"tid":{},"ts":{},"dur":{})", cat,
                                 json_quote(name), pid, tid, ts(s), ts(start_ns_ + (e - s)));
  if (!args.empty()) {
    body += R"(,"args":{)";
    body += args;
    body += '}';
  }
  body += '}';
  event(body);
}

void TraceStream::gc(const GcPause& g) {
  constexpr std::uint64_t kGcTrack = 1;  // never a real thread id
  const int pid = worker_pid(g.worker);
  thread(pid, kGcTrack, "GC pauses");
  const std::string gen = g.generation < 0 ? "null" : std::to_string(g.generation);
  slice(pid, kGcTrack, g.generation < 0 ? "gc" : "gc gen " + gen, "gc", g.start_ns, g.end_ns,
        fmt::format(R"("generation":{},"collected":{})", gen,
                    g.collected < 0 ? std::string("null") : std::to_string(g.collected)));
}

void TraceStream::query(const QueryEvent& q) {
  const int pid = worker_pid(q.worker);
  // The statement's verb and table are in the slice's name; the fingerprint (no literals) and its id as arguments.
  std::string args = fmt::format(R"("fingerprint":{},"fingerprint_id":"{:x}")", json_quote(q.fingerprint),
                                 q.fingerprint_id);
  if (q.server_side) {
    thread(pid + 1000, q.tgid, fmt::format("backend {}", q.tgid));
    slice(pid + 1000, q.tgid, "exec " + query_name(q), "db_server", q.start_ns, q.end_ns, args);
    return;
  }
  // Thread ids are the worker's own (stable, readable).
  thread(pid, q.tid, fmt::format("DB thread {}", q.tid));
  if (!q.desc.empty()) args += R"(,"desc":)" + json_quote(q.desc);
  args += fmt::format(R"(,"connection":"{:x}")", q.conn);
  slice(pid, q.tid, q.desc.empty() ? query_name(q) : q.desc + ": " + query_name(q), "db_client", q.start_ns, q.end_ns,
        args);
}

void TraceStream::lock_wait(const LockWait& l) {
  const int pid = worker_pid(l.worker) + 1000;
  const std::uint64_t track = 1'000'000'000ULL + l.backend;  // beside the backend's executions, never inside them
  thread(pid, track, fmt::format("backend {} lock waits", l.backend));
  slice(pid, track, "lock wait", "db_lock", l.start_ns, l.end_ns, "");
}

std::uint64_t TraceStream::lane(const std::string& device, std::uint64_t start_ns, std::uint64_t end_ns) {
  // Requests arrive about in completion order, not start order: a lane is free for a request when none of its recent
  // requests overlaps it. "Recent": ended within 10 s of the newest start seen (a request drained later than that
  // after an overlapping one may share its lane).
  constexpr std::uint64_t kKeepNs = 10'000'000'000ULL;
  auto& lanes = lanes_[device];
  std::uint64_t& newest = newest_start_[device];
  newest = std::max(newest, start_ns);
  const std::uint64_t keep_after = newest > kKeepNs ? newest - kKeepNs : 0;
  std::size_t chosen = lanes.size();
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    auto& l = lanes[i];
    l.erase(std::remove_if(l.begin(), l.end(), [&](const auto& iv) { return iv.second < keep_after; }), l.end());
    if (chosen != lanes.size()) continue;
    const bool free = std::none_of(l.begin(), l.end(),
                                   [&](const auto& iv) { return iv.first < end_ns && start_ns < iv.second; });
    if (free) chosen = i;
  }
  if (chosen == lanes.size()) lanes.emplace_back();
  lanes[chosen].emplace_back(start_ns, end_ns);
  return chosen + 1;
}

void TraceStream::io(const IoEvent& e) {
  const int pid = device_pid(e.device);
  const std::uint64_t tid = lane(e.device, e.start_ns, e.complete_ns);
  thread(pid, tid, fmt::format("lane {}", tid));
  slice(pid, tid, fmt::format("{} {} B", e.op, e.bytes), "disk", e.start_ns, e.complete_ns,
        fmt::format(R"("worker":{},"via":{})", json_quote(e.worker.worker), json_quote(e.via)));
  slice(pid, tid, "device", "disk", e.issue_ns, e.complete_ns, "");
}

void TraceStream::scrape(const SynapseScrape& s) {
  if (s.at_ns < start_ns_) return;
  const int pid = worker_pid(s.worker);
  auto counter = [&](const char* name, double value) {
    event(fmt::format(R"({{"ph":"C","name":"{}","pid":{},"tid":0,"ts":{},"args":{{"seconds":{}}}}})", name, pid,
                      ts(s.at_ns), value));
  };
  if (s.counters.query_time_sum) counter("synapse_storage_query_time_sum", *s.counters.query_time_sum);
  if (s.counters.gc_time_sum) counter("python_gc_time_sum", *s.counters.gc_time_sum);
}

bool TraceStream::finish(std::uint64_t events, std::uint64_t dropped, std::uint64_t max_events, std::string& error) {
  out_.write(fmt::format("\n],\n"
                         R"("otherData":{{"generator":"synapse-profiler record","start":"{}","events":{},)"
                         R"("dropped":{},"max_events":{}}}}})"
                         "\n",
                         wall_, events, dropped, max_events));
  return out_.close(error);
}

}  // namespace sp
