#include "core/record/trace_json.h"

#include <fmt/chrono.h>
#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/record/record_format.h"
#include "core/util/json.h"

namespace sp {

using record_format::query_name;
using record_format::seconds;
using record_format::worker_title;

namespace {

// Fixed notation, microseconds with nanosecond precision: what the trace format's "ts"/"dur" take.
std::string us(double v) { return fmt::format("{:.3f}", v); }

class TraceWriter {
 public:
  TraceWriter(const Recording& r, std::ostream& out) : r_(r), out_(out) {}

  void event(const std::string& body) {
    out_ << (first_ ? "\n" : ",\n") << body;
    first_ = false;
  }
  void process(int pid, const std::string& name, int sort) {
    event(fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"tid":0,"args":{{"name":{}}}}})", pid,
                      json_quote(name)));
    event(fmt::format(R"({{"ph":"M","name":"process_sort_index","pid":{},"tid":0,"args":{{"sort_index":{}}}}})", pid,
                      sort));
  }
  void thread(int pid, std::uint64_t tid, const std::string& name) {
    if (!named_.insert({pid, tid}).second) return;
    event(fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":{}}}}})", pid, tid,
                      json_quote(name)));
  }
  // A complete slice; `args` is the inside of a JSON object (may be empty).
  void slice(int pid, std::uint64_t tid, const std::string& name, const char* cat, std::uint64_t start_ns,
             std::uint64_t end_ns, const std::string& args) {
    const std::uint64_t s = std::max(start_ns, r_.start_ns());
    const std::uint64_t e = std::max(end_ns, s);
    event(fmt::format(R"({{"ph":"X","name":{},"cat":"{}","pid":{},"tid":{},"ts":{},"dur":{},"args":{{{}}}}})",
                      json_quote(name), cat, pid, tid, us(static_cast<double>(s - r_.start_ns()) / 1e3),
                      us(static_cast<double>(e - s) / 1e3), args));
  }
  void counter(int pid, const std::string& name, std::uint64_t at_ns, double value) {
    if (at_ns < r_.start_ns()) return;
    event(fmt::format(R"({{"ph":"C","name":{},"pid":{},"tid":0,"ts":{},"args":{{"seconds":{}}}}})", json_quote(name),
                      pid, us(static_cast<double>(at_ns - r_.start_ns()) / 1e3), value));
  }

 private:
  const Recording& r_;
  std::ostream& out_;
  bool first_ = true;
  std::set<std::pair<int, std::uint64_t>> named_;
};

// Lane assignment for overlapping intervals (disk requests): the first lane free at the start, else a new one.
template <typename T, typename Start, typename End>
std::vector<std::size_t> lanes(const std::vector<const T*>& items, Start start, End end) {
  std::vector<std::uint64_t> busy_until;
  std::vector<std::size_t> out;
  out.reserve(items.size());
  for (const T* it : items) {
    std::size_t lane = 0;
    while (lane < busy_until.size() && busy_until[lane] > start(*it)) ++lane;
    if (lane == busy_until.size()) busy_until.push_back(0);
    busy_until[lane] = end(*it);
    out.push_back(lane);
  }
  return out;
}

}  // namespace

void write_trace_json(const Recording& r, std::ostream& out) {
  // Process ids: workers 1.., their PostgreSQL backends 1001.., disks 2001.. (stable order: sorted names).
  std::set<WorkerLabels> workers;
  std::set<std::string> devices;
  for (const auto& g : r.gcs()) workers.insert(g.worker);
  for (const auto& q : r.queries()) workers.insert(q.worker);
  for (const auto& l : r.lock_waits()) workers.insert(l.worker);
  for (const auto& s : r.scrapes()) workers.insert(s.worker);
  for (const auto& io : r.ios()) devices.insert(io.device);
  std::map<WorkerLabels, int> worker_pid;
  for (const auto& w : workers) worker_pid.emplace(w, static_cast<int>(worker_pid.size()) + 1);
  std::map<std::string, int> device_pid;
  for (const auto& d : devices) device_pid.emplace(d, static_cast<int>(device_pid.size()) + 2001);

  out << "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"synapse-profiler record\",\"start\":"
      << json_quote(fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", std::chrono::floor<std::chrono::seconds>(r.wall_start())))
      << ",\"events\":" << r.events() << ",\"dropped\":" << r.dropped() << "},\"traceEvents\":[";
  TraceWriter t(r, out);
  for (const auto& [w, pid] : worker_pid) {
    t.process(pid, "worker " + worker_title(w), pid);
    t.process(pid + 1000, "PostgreSQL for " + w.worker, pid + 1000);
  }
  for (const auto& [d, pid] : device_pid) t.process(pid, "disk " + d, pid);

  constexpr std::uint64_t kGcTrack = 1;
  for (const auto& g : r.gcs()) {
    const int pid = worker_pid.at(g.worker);
    t.thread(pid, kGcTrack, "GC pauses");
    std::string gen = g.generation < 0 ? "?" : std::to_string(g.generation);
    std::string collected = g.collected < 0 ? "null" : std::to_string(g.collected);
    t.slice(pid, kGcTrack, "gc gen " + gen, "gc", g.start_ns, g.end_ns,
            fmt::format(R"("generation":{},"collected":{},"pid":{},"thread":{})", g.generation < 0 ? "null" : gen,
                        collected, g.tgid, g.tid));
  }
  for (const auto& q : r.queries()) {
    const int pid = worker_pid.at(q.worker);
    const std::string args = fmt::format(R"("fingerprint":{},"fingerprint_id":"{:016x}","verb":{},"table":{})",
                                         json_quote(q.fingerprint), q.fingerprint_id, json_quote(q.verb),
                                         json_quote(q.table));
    if (q.server_side) {
      t.thread(pid + 1000, q.tgid, fmt::format("backend {}", q.tgid));
      t.slice(pid + 1000, q.tgid, "exec " + query_name(q), "db_server", q.start_ns, q.end_ns, args);
    } else {
      // Thread ids are the worker's own (stable, readable); the GC track's 1 is never a real thread id.
      t.thread(pid, q.tid, fmt::format("DB thread {}", q.tid));
      t.slice(pid, q.tid, q.desc.empty() ? query_name(q) : q.desc + ": " + query_name(q), "db_client", q.start_ns,
              q.end_ns,
              args + fmt::format(R"(,"desc":{},"pid":{},"connection":"{:x}")", json_quote(q.desc), q.tgid, q.conn));
    }
  }
  for (const auto& l : r.lock_waits()) {
    const int pid = worker_pid.at(l.worker) + 1000;
    const std::uint64_t track = 1'000'000'000ULL + l.backend;  // beside the backend's executions, never inside them
    t.thread(pid, track, fmt::format("backend {} lock waits", l.backend));
    t.slice(pid, track, "lock wait", "db_lock", l.start_ns, l.end_ns, fmt::format(R"("backend":{})", l.backend));
  }
  for (const auto& [device, pid] : device_pid) {
    std::vector<const IoEvent*> reqs;
    for (const auto& io : r.ios()) {
      if (io.device == device) reqs.push_back(&io);
    }
    std::sort(reqs.begin(), reqs.end(), [](const IoEvent* a, const IoEvent* b) { return a->start_ns < b->start_ns; });
    auto lane = lanes<IoEvent>(reqs, [](const IoEvent& e) { return e.start_ns; },
                               [](const IoEvent& e) { return e.complete_ns; });
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      const IoEvent& e = *reqs[i];
      const std::uint64_t tid = lane[i] + 1;
      t.thread(pid, tid, fmt::format("lane {}", tid));
      t.slice(pid, tid, fmt::format("{} {} B", e.op, e.bytes), "disk", e.start_ns, e.complete_ns,
              fmt::format(R"("worker":{},"via":{},"bytes":{},"queue_us":{},"device_us":{})", json_quote(e.worker.worker),
                          json_quote(e.via), e.bytes, us(seconds(e.start_ns, e.issue_ns) * 1e6),
                          us(seconds(e.issue_ns, e.complete_ns) * 1e6)));
      t.slice(pid, tid, "device", "disk", e.issue_ns, e.complete_ns, "");
    }
  }
  for (const auto& s : r.scrapes()) {
    const int pid = worker_pid.at(s.worker);
    if (s.counters.query_time_sum) t.counter(pid, "synapse_storage_query_time_sum", s.at_ns, *s.counters.query_time_sum);
    if (s.counters.gc_time_sum) t.counter(pid, "python_gc_time_sum", s.at_ns, *s.counters.gc_time_sum);
  }
  out << "\n]}\n";
}

}  // namespace sp
