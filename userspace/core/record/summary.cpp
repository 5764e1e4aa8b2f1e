#include "core/record/summary.h"

#include <fmt/chrono.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "core/correlate/overlap.h"
#include "core/record/record_format.h"

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

RecordingSummary summarize(const Recording& r) {
  RecordingSummary s;
  const std::uint64_t from = r.start_ns(), to = std::max(r.end_ns(), r.start_ns());
  s.span_s = seconds(from, to);
  s.wall_start = fmt::format("{:%Y-%m-%d %H:%M:%S} UTC", std::chrono::floor<std::chrono::seconds>(r.wall_start()));
  s.events = r.events();
  s.dropped = r.dropped();
  s.max_events = r.max_events();

  struct Acc {
    std::vector<double> gc, client, server, locks;
    std::map<int, std::size_t> per_gen;
    IntervalUnion gc_u, client_u, server_u, disk_u;
    double io_bytes = 0;
    std::size_t io_requests = 0;
    std::map<std::string, std::pair<QueryEvent, std::vector<double>>> fps;
    std::map<std::string, std::vector<double>> descs;
  };
  std::map<WorkerLabels, Acc> acc;
  for (const auto& g : r.gcs()) {
    Acc& a = acc[g.worker];
    a.gc.push_back(seconds(g.start_ns, g.end_ns));
    ++a.per_gen[g.generation];
    a.gc_u.add(std::max(g.start_ns, from), g.end_ns);
  }
  for (const auto& q : r.queries()) {
    Acc& a = acc[q.worker];
    const double d = seconds(q.start_ns, q.end_ns);
    if (q.server_side) {
      a.server.push_back(d);
      a.server_u.add(std::max(q.start_ns, from), q.end_ns);
      continue;
    }
    a.client.push_back(d);
    a.client_u.add(std::max(q.start_ns, from), q.end_ns);
    auto& fp = a.fps[q.fingerprint.empty() ? query_name(q) : q.fingerprint];
    if (fp.second.empty()) fp.first = q;
    fp.second.push_back(d);
    a.descs[q.desc.empty() ? "unattributed" : q.desc].push_back(d);
  }
  for (const auto& l : r.lock_waits()) acc[l.worker].locks.push_back(seconds(l.start_ns, l.end_ns));
  std::map<std::string, std::tuple<std::size_t, double, std::vector<double>, std::vector<double>,
                                   std::map<std::string, std::size_t>>>
      dev;
  for (const auto& io : r.ios()) {
    Acc& a = acc[io.worker];
    a.io_bytes += io.bytes;
    ++a.io_requests;
    a.disk_u.add(std::max(io.start_ns, from), io.complete_ns);
    auto& [n, bytes, queue, device, per_worker] = dev[io.device];
    ++n;
    bytes += io.bytes;
    queue.push_back(seconds(io.start_ns, io.issue_ns));
    device.push_back(seconds(io.issue_ns, io.complete_ns));
    ++per_worker[io.worker.worker + " (" + io.via + ")"];
  }

  // Query time overlapped by GC pauses of the same process, each (query, pause) pair once.
  std::map<std::uint32_t, WorkerLabels> worker_of_tgid;
  std::vector<std::tuple<std::uint64_t, bool, std::size_t>> order;  // end, is_pause, index
  for (std::size_t i = 0; i < r.gcs().size(); ++i) order.emplace_back(r.gcs()[i].end_ns, true, i);
  for (std::size_t i = 0; i < r.queries().size(); ++i) {
    if (!r.queries()[i].server_side) order.emplace_back(r.queries()[i].end_ns, false, i);
  }
  std::sort(order.begin(), order.end());
  OverlapTracker overlap(std::max<std::uint64_t>(to - from, 1) + 1);
  std::map<WorkerLabels, std::uint64_t> overlap_ns;
  for (const auto& [end, pause, i] : order) {
    if (pause) {
      const auto& g = r.gcs()[i];
      overlap_ns[g.worker] += overlap.add_pause(g.tgid, g.start_ns, g.end_ns);
    } else {
      const auto& q = r.queries()[i];
      overlap_ns[q.worker] += overlap.add_query(q.tgid, q.start_ns, q.end_ns);
    }
  }

  const double span = std::max(s.span_s, 1e-9);
  for (auto& [w, a] : acc) {
    WorkerSummary ws;
    ws.worker = w;
    ws.gc = distribution_of(a.gc);
    ws.gc_pauses_s = a.gc;
    ws.gc_per_generation = a.per_gen;
    ws.client = distribution_of(a.client);
    ws.server = distribution_of(a.server);
    ws.lock_waits = distribution_of(a.locks);
    ws.io_bytes = a.io_bytes;
    ws.io_requests = a.io_requests;
    ws.gc_share = static_cast<double>(a.gc_u.covered(from, to)) / 1e9 / span;
    ws.client_share = static_cast<double>(a.client_u.covered(from, to)) / 1e9 / span;
    ws.server_share = static_cast<double>(a.server_u.covered(from, to)) / 1e9 / span;
    ws.disk_share = static_cast<double>(a.disk_u.covered(from, to)) / 1e9 / span;
    ws.query_gc_overlap_s = static_cast<double>(overlap_ns[w]) / 1e9;
    for (auto& [text, fp] : a.fps) {
      ws.top_fingerprints.push_back({text, fp.first.verb, fp.first.table, distribution_of(std::move(fp.second))});
    }
    std::sort(ws.top_fingerprints.begin(), ws.top_fingerprints.end(),
              [](const FingerprintStats& x, const FingerprintStats& y) { return x.time.total_s > y.time.total_s; });
    if (ws.top_fingerprints.size() > 10) ws.top_fingerprints.resize(10);
    for (auto& [desc, times] : a.descs) ws.top_transactions.push_back({desc, "", "", distribution_of(std::move(times))});
    std::sort(ws.top_transactions.begin(), ws.top_transactions.end(),
              [](const FingerprintStats& x, const FingerprintStats& y) { return x.time.total_s > y.time.total_s; });
    if (ws.top_transactions.size() > 10) ws.top_transactions.resize(10);
    s.workers.push_back(std::move(ws));
  }
  for (auto& [name, d] : dev) {
    auto& [n, bytes, queue, device, per_worker] = d;
    DeviceSummary ds;
    ds.device = name;
    ds.requests = n;
    ds.bytes = bytes;
    ds.queue = distribution_of(std::move(queue));
    ds.device_times_s = device;
    ds.device_time = distribution_of(std::move(device));
    ds.per_worker = std::move(per_worker);
    s.devices.push_back(std::move(ds));
  }

  // Findings, in plain sentences.
  if (s.dropped > 0) {
    s.findings.push_back(fmt::format("The event cap ({}) was reached: {} later events were not recorded; the numbers "
                                     "below cover only what was recorded.",
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
  std::string out = fmt::format("synapse-profiler record: {:.1f} s from {}, {} events{}\n\n", s.span_s, s.wall_start,
                                s.events, s.dropped ? fmt::format(" ({} dropped at the cap)", s.dropped) : "");
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
    for (std::size_t i = 0; i < w.top_transactions.size() && i < 5; ++i) {
      const auto& t = w.top_transactions[i];
      out += fmt::format("    transaction {}: {} queries, {:.3f} s, mean {}, p99 {}\n", t.fingerprint, t.time.count,
                         t.time.total_s, ms(t.time.mean_s), ms(t.time.p99_s));
    }
  }
  return out;
}

}  // namespace sp
