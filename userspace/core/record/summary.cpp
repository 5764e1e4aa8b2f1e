#include "core/record/summary.h"

#include <fmt/chrono.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "core/correlate/overlap.h"
#include "core/record/record_format.h"
#include "core/record/recording.h"

namespace sp {

using record_format::ms;
using record_format::pct;
using record_format::query_name;
using record_format::seconds;
using record_format::worker_title;

Distribution distribution_of(std::vector<double> v) {
  Distribution d;
  d.count = v.size();
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  for (double x : v) d.total_s += x;
  d.mean_s = d.total_s / static_cast<double>(v.size());
  // Nearest rank: the smallest value with at least p of the values at or below it.
  auto rank = [&](double p) {
    auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::min(v.size(), std::max<std::size_t>(k, 1)) - 1];
  };
  d.p50_s = rank(0.50);
  d.p99_s = rank(0.99);
  d.max_s = v.back();
  return d;
}

namespace {

// The time bar's causes in priority order: at each moment the first active one owns it. A GC pause stops every
// thread of the worker (the collector holds the GIL); PostgreSQL executing one of its statements is the most specific
// explanation of a database wait; then a database call in flight outside execution (network, pool, libpq, locks);
// then a disk request the worker or its backends caused. New causes (reactor, thread states) slot in by priority.
enum TimeCause : std::size_t { kGcCause = 0, kServerCause, kClientCause, kDiskCause, kTimeCauses };
constexpr const char* kCauseKey[] = {"gc", "db_server", "db_client", "disk"};
constexpr const char* kCauseLabel[] = {"GC pauses", "PostgreSQL executing its statements",
                                       "database call in flight, not executing", "disk requests"};

}  // namespace

SummaryBuilder::Worker::Worker(std::uint64_t from_ns) : timeline(kTimeCauses, from_ns) {}

SummaryBuilder::Worker& SummaryBuilder::worker(const WorkerLabels& w) {
  auto it = workers_.find(w);
  if (it == workers_.end()) it = workers_.emplace(w, Worker(from_ns_)).first;
  return it->second;
}

void SummaryBuilder::gc(const GcPause& g) {
  Worker& a = worker(g.worker);
  const std::uint64_t start = std::max(g.start_ns, from_ns_);
  a.gc.add(seconds(g.start_ns, g.end_ns));
  ++a.per_gen[g.generation];
  a.timeline.add(kGcCause, start, g.end_ns);
  a.overlap_ns += overlap_.add_pause(g.tgid, g.start_ns, g.end_ns);
  a.slowest.offer(g.end_ns > start ? g.end_ns - start : 0, [&] {
    return SlowMoment{"gc", g.generation < 0 ? "GC pause" : fmt::format("GC pause, generation {}", g.generation),
                      start, g.end_ns, g.tid};
  });
}

void SummaryBuilder::query(const QueryEvent& q) {
  Worker& a = worker(q.worker);
  const std::uint64_t start = std::max(q.start_ns, from_ns_);
  const double d = seconds(q.start_ns, q.end_ns);
  if (q.server_side) {
    a.server.add(d);
    a.timeline.add(kServerCause, start, q.end_ns);
    a.slowest.offer(q.end_ns > start ? q.end_ns - start : 0, [&] {
      return SlowMoment{"db_server", "PostgreSQL executing " + query_name(q), start, q.end_ns, q.tid};
    });
    return;
  }
  a.client.add(d);
  a.timeline.add(kClientCause, start, q.end_ns);
  a.overlap_ns += overlap_.add_query(q.tgid, q.start_ns, q.end_ns);
  auto& st = a.statements[q.fingerprint.empty() ? query_name(q) : q.fingerprint];
  if (st.time.count() == 0) {
    st.verb = q.verb;
    st.table = q.table;
  }
  st.time.add(d);
  a.transactions[q.desc.empty() ? "unattributed" : q.desc].add(d);
  a.slowest.offer(q.end_ns > start ? q.end_ns - start : 0, [&] {
    return SlowMoment{"db_client", q.desc.empty() ? query_name(q) : q.desc + ": " + query_name(q), start, q.end_ns,
                      q.tid};
  });
}

void SummaryBuilder::lock_wait(const LockWait& l) {
  Worker& a = worker(l.worker);
  a.locks.add(seconds(l.start_ns, l.end_ns));
  const std::uint64_t start = std::max(l.start_ns, from_ns_);
  a.slowest.offer(l.end_ns > start ? l.end_ns - start : 0, [&] {
    return SlowMoment{"db_lock", fmt::format("lock wait of backend {}", l.backend), start, l.end_ns, l.backend};
  });
}

void SummaryBuilder::io(const IoEvent& e) {
  Worker& a = worker(e.worker);
  const std::uint64_t start = std::max(e.start_ns, from_ns_);
  a.io_bytes += static_cast<double>(e.bytes);
  ++a.io_requests;
  a.timeline.add(kDiskCause, start, e.complete_ns);
  a.slowest.offer(e.complete_ns > start ? e.complete_ns - start : 0, [&] {
    return SlowMoment{"disk", fmt::format("disk {} {} of {} B ({})", e.device, e.op, e.bytes, e.via), start,
                      e.complete_ns, 0};
  });
  Device& d = devices_[e.device];
  ++d.requests;
  d.bytes += static_cast<double>(e.bytes);
  d.queue.add(seconds(e.start_ns, e.issue_ns));
  d.device.add(seconds(e.issue_ns, e.complete_ns));
  ++d.per_worker[e.worker.worker + " (" + e.via + ")"];
}

RecordingSummary SummaryBuilder::summarize(std::uint64_t to_ns) const {
  RecordingSummary s;
  const std::uint64_t from = from_ns_, to = std::max(to_ns, from_ns_);
  s.span_s = seconds(from, to);
  const double span = std::max(s.span_s, 1e-9);
  for (const auto& [w, a] : workers_) {
    WorkerSummary ws;
    ws.worker = w;
    ws.gc = a.gc.distribution();
    ws.gc_pause_buckets = a.gc.buckets();
    ws.gc_per_generation = a.per_gen;
    ws.client = a.client.distribution();
    ws.server = a.server.distribution();
    ws.lock_waits = a.locks.distribution();
    ws.io_bytes = a.io_bytes;
    ws.io_requests = a.io_requests;
    const CauseTimeline::Totals t = a.timeline.totals(to);
    auto share = [&](std::uint64_t ns) { return static_cast<double>(ns) / 1e9 / span; };
    ws.gc_share = share(t.union_ns[kGcCause]);
    ws.client_share = share(t.union_ns[kClientCause]);
    ws.server_share = share(t.union_ns[kServerCause]);
    ws.disk_share = share(t.union_ns[kDiskCause]);
    double rest = 1;
    for (std::size_t c = 0; c < kTimeCauses; ++c) {
      ws.time_bar.push_back({kCauseKey[c], kCauseLabel[c], share(t.exclusive_ns[c])});
      rest -= ws.time_bar.back().share;
    }
    ws.time_bar.push_back({"other", "none of these (Python, the reactor, idle)", std::max(0.0, rest)});
    ws.query_gc_overlap_s = static_cast<double>(a.overlap_ns) / 1e9;
    for (const auto& [text, st] : a.statements) {
      ws.top_fingerprints.push_back({text, st.verb, st.table, st.time.distribution()});
    }
    auto by_total = [](const FingerprintStats& x, const FingerprintStats& y) { return x.time.total_s > y.time.total_s; };
    std::sort(ws.top_fingerprints.begin(), ws.top_fingerprints.end(), by_total);
    if (ws.top_fingerprints.size() > 10) ws.top_fingerprints.resize(10);
    for (const auto& [desc, times] : a.transactions) ws.top_transactions.push_back({desc, "", "", times.distribution()});
    std::sort(ws.top_transactions.begin(), ws.top_transactions.end(), by_total);
    if (ws.top_transactions.size() > 10) ws.top_transactions.resize(10);
    ws.slowest = a.slowest.longest_first();
    for (auto& m : ws.slowest) {
      m.at_s = seconds(from, m.start_ns);
      m.duration_s = seconds(m.start_ns, m.end_ns);
    }
    s.workers.push_back(std::move(ws));
  }
  for (const auto& [name, d] : devices_) {
    DeviceSummary ds;
    ds.device = name;
    ds.requests = d.requests;
    ds.bytes = d.bytes;
    ds.queue = d.queue.distribution();
    ds.device_time = d.device.distribution();
    ds.device_time_buckets = d.device.buckets();
    ds.per_worker = d.per_worker;
    s.devices.push_back(std::move(ds));
  }
  return s;
}

RecordingSummary summarize(const Recording& r) {
  RecordingSummary s = r.aggregates().summarize(std::max(r.end_ns(), r.start_ns()));
  s.wall_start = fmt::format("{:%Y-%m-%d %H:%M:%S} UTC", std::chrono::floor<std::chrono::seconds>(r.wall_start()));
  s.events = r.events();
  s.dropped = r.dropped();
  s.max_events = r.max_events();

  // Findings, in plain sentences.
  if (s.dropped > 0) {
    s.findings.push_back(fmt::format("The trace stopped after {} events (--max-events): {} later events were not "
                                     "written to it; the numbers here still count them.",
                                     s.max_events, s.dropped));
  }
  for (const auto& w : s.workers) {
    const std::string& n = w.worker.worker;
    if (w.client.total_s > 0 && w.query_gc_overlap_s > 0) {
      s.findings.push_back(fmt::format("{} of {}'s query time overlapped GC pauses of the same process ({:.3f} s of "
                                       "{:.3f} s): those queries waited for the collector to release the GIL.",
                                       pct(w.query_gc_overlap_s / w.client.total_s), n, w.query_gc_overlap_s,
                                       w.client.total_s));
    }
    if (w.gc.count > 0) {
      s.findings.push_back(fmt::format("{} spent {} of the recording in {} GC pauses (p99 {}, longest {}).", n,
                                       pct(w.gc_share), w.gc.count, ms(w.gc.p99_s), ms(w.gc.max_s)));
    }
    if (w.client.count > 0) {
      std::string where =
          w.server.count == 0
              ? "no server-side execution was seen for it"
              : fmt::format("PostgreSQL was executing its statements {} of the time{}", pct(w.server_share),
                            w.client_share > 2 * w.server_share + 0.01
                                ? ", so most of the wait is outside PostgreSQL's execution (network, connection "
                                  "pool, libpq, locks before execution)"
                                : "");
      s.findings.push_back(fmt::format("{} had a database call in flight {} of the time ({} calls, p99 {}); {}.", n,
                                       pct(w.client_share), w.client.count, ms(w.client.p99_s), where));
    }
    if (!w.top_fingerprints.empty()) {
      const auto& f = w.top_fingerprints.front();
      s.findings.push_back(fmt::format("{}'s most expensive statement: \"{}\" ({} calls, {:.3f} s in total, mean {}, "
                                       "p99 {}).",
                                       n, f.fingerprint.size() > 120 ? f.fingerprint.substr(0, 117) + "..." : f.fingerprint,
                                       f.time.count, f.time.total_s, ms(f.time.mean_s), ms(f.time.p99_s)));
    }
    if (w.io_requests > 0) {
      s.findings.push_back(fmt::format("{} caused {} disk requests ({:.1f} MiB), itself or through its PostgreSQL "
                                       "backends; a request was in flight {} of the time.",
                                       n, w.io_requests, w.io_bytes / 1048576.0, pct(w.disk_share)));
    }
  }
  for (const auto& d : s.devices) {
    s.findings.push_back(fmt::format("Disk {}: {} requests, {:.1f} MiB; device time p50 {}, p99 {}; queue time p99 {}.",
                                     d.device, d.requests, d.bytes / 1048576.0, ms(d.device_time.p50_s),
                                     ms(d.device_time.p99_s), ms(d.queue.p99_s)));
  }
  if (s.workers.empty()) s.findings.push_back("No Synapse worker activity was recorded.");
  return s;
}

std::string render_summary_text(const RecordingSummary& s) {
  std::string out = fmt::format("synapse-profiler record: {:.1f} s from {}, {} events in the trace{}\n\n", s.span_s,
                                s.wall_start, s.events,
                                s.dropped ? fmt::format("; stopped after {} events, {} events not written", s.events,
                                                        s.dropped)
                                          : "");
  out += "Findings:\n";
  for (const auto& f : s.findings) out += "  - " + f + "\n";
  out += "\nPer worker:\n";
  for (const auto& w : s.workers) {
    out += fmt::format("  {}\n", worker_title(w.worker));
    out += fmt::format("    GC:        {} pauses, {:.3f} s, share {}, p99 {}, max {}\n", w.gc.count, w.gc.total_s,
                       pct(w.gc_share), ms(w.gc.p99_s), ms(w.gc.max_s));
    out += fmt::format("    queries:   {} calls, {:.3f} s, share {}, mean {}, p99 {}\n", w.client.count,
                       w.client.total_s, pct(w.client_share), ms(w.client.mean_s), ms(w.client.p99_s));
    out += fmt::format("    server:    {} statements, {:.3f} s, share {}; lock waits {} ({:.3f} s)\n", w.server.count,
                       w.server.total_s, pct(w.server_share), w.lock_waits.count, w.lock_waits.total_s);
    out += fmt::format("    disk:      {} requests, {:.1f} MiB, share {}\n", w.io_requests, w.io_bytes / 1048576.0,
                       pct(w.disk_share));
    out += fmt::format("    GC overlap with queries: {:.3f} s\n", w.query_gc_overlap_s);
    out += "    wall time:";
    for (const auto& t : w.time_bar) out += fmt::format(" {} {}", t.cause, pct(t.share));
    out += "\n";
    for (std::size_t i = 0; i < w.slowest.size() && i < 3; ++i) {
      const auto& m = w.slowest[i];
      out += fmt::format("    slow: {} at {:.6f} s for {}\n", m.what, m.at_s, ms(m.duration_s));
    }
    for (std::size_t i = 0; i < w.top_transactions.size() && i < 5; ++i) {
      const auto& t = w.top_transactions[i];
      out += fmt::format("    transaction {}: {} queries, {:.3f} s, mean {}, p99 {}\n", t.fingerprint, t.time.count,
                         t.time.total_s, ms(t.time.mean_s), ms(t.time.p99_s));
    }
  }
  return out;
}

}  // namespace sp
