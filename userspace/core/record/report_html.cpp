#include "core/record/report_html.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "core/record/record_format.h"

namespace sp {

using record_format::ms;
using record_format::pct;
using record_format::worker_title;

namespace {

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control bytes never reach the page; other bytes pass (the page is UTF-8, fingerprints are ASCII-safe).
        out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
    }
  }
  return out;
}

// A bar chart of a duration distribution over the exported buckets' bounds, as inline SVG.
std::string svg_histogram(const std::vector<std::pair<double, std::uint64_t>>& values_s, const std::string& title) {
  static const double kBounds[] = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                   2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  constexpr std::size_t kN = std::size(kBounds) + 1;
  std::size_t counts[kN] = {};
  for (const auto& [v, n] : values_s) {
    std::size_t b = 0;
    while (b < std::size(kBounds) && v > kBounds[b]) ++b;
    counts[b] += n;
  }
  // Only the range that holds values, so the chart is readable.
  std::size_t lo = kN, hi = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    if (counts[i]) {
      lo = std::min(lo, i);
      hi = i;
    }
  }
  if (lo == kN) return "<p class=\"none\">no " + html_escape(title) + "</p>";
  const std::size_t max = *std::max_element(counts, counts + kN);
  const int bar = 36, gap = 6, height = 120, top = 20, label = 30;
  const int width = static_cast<int>(hi - lo + 1) * (bar + gap) + gap;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">"
      "<rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>",
      width, top + height + label, html_escape(title));
  for (std::size_t i = lo; i <= hi; ++i) {
    const int x = gap + static_cast<int>(i - lo) * (bar + gap);
    const int h = counts[i] ? std::max(2, static_cast<int>(static_cast<double>(counts[i]) * height / max)) : 0;
    const std::string le = i < std::size(kBounds) ? fmt::format("≤{}", ms(kBounds[i])) : std::string("more");
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#3b6ea8\"><title>{}: {}</title></rect>",
                       x, top + height - h, bar, h, le, counts[i]);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>", x + bar / 2,
                       top + height - h - 4, counts[i]);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"8\" text-anchor=\"middle\">{}</text>", x + bar / 2,
                       top + height + 14, i < std::size(kBounds) ? fmt::format("{:g}ms", kBounds[i] * 1e3) : "more");
  }
  return svg + "</svg>";
}

// Colours of the time bar's causes; a cause without one (a new family's) gets a grey of its own.
const char* cause_colour(const std::string& cause) {
  static const std::pair<const char*, const char*> kColours[] = {
      {"gc", "#d1495b"}, {"db_server", "#2e6fba"}, {"db_client", "#7fb2e5"}, {"disk", "#edae49"},
      {"db_lock", "#8e5ea2"}, {"other", "#e4e4e4"}};
  for (const auto& [c, colour] : kColours) {
    if (cause == c) return colour;
  }
  return "#a0a0a0";
}

// One worker's wall time as a horizontal bar of disjoint segments (inline SVG), labelled where wide enough.
std::string svg_time_bar(const WorkerSummary& w) {
  constexpr int kWidth = 760, kHeight = 30;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"bar\" width=\"{}\" height=\"{}\" role=\"img\" "
      "aria-label=\"where the wall time of {} went\">",
      kWidth, kHeight, html_escape(w.worker.worker));
  double x = 0;
  for (const auto& t : w.time_bar) {
    const double width = std::max(0.0, t.share) * kWidth;
    if (width <= 0) continue;
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"0\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\" data-cause=\"{}\">"
                       "<title>{}: {}</title></rect>",
                       x, width, kHeight, cause_colour(t.cause), html_escape(t.cause), html_escape(t.label),
                       pct(t.share));
    const std::string text = pct(t.share);
    if (width >= 8.0 * static_cast<double>(text.size())) {
      svg += fmt::format("<text x=\"{:.1f}\" y=\"20\" font-size=\"13\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
                         x + width / 2, t.cause == "other" || t.cause == "disk" || t.cause == "db_client" ? "#222" : "#fff",
                         text);
    }
    x += width;
  }
  return svg + "</svg>";
}

std::string time_bar_legend(const RecordingSummary& s) {
  std::vector<std::pair<std::string, std::string>> seen;
  for (const auto& w : s.workers) {
    for (const auto& t : w.time_bar) {
      if (std::none_of(seen.begin(), seen.end(), [&](const auto& p) { return p.first == t.cause; })) {
        seen.emplace_back(t.cause, t.label);
      }
    }
  }
  std::string h = "<p class=\"legend\">";
  for (const auto& [cause, label] : seen) {
    h += fmt::format("<span><i style=\"background:{}\"></i>{}</span> ", cause_colour(cause), html_escape(label));
  }
  return h + "</p>\n";
}

std::string dist_cells(const Distribution& d) {
  return fmt::format("<td>{}</td><td>{:.3f}</td><td>{}</td><td>{}</td><td>{}</td>", d.count, d.total_s, ms(d.mean_s),
                     ms(d.p99_s), ms(d.max_s));
}

}  // namespace

std::string render_report_html(const RecordingSummary& s) {
  std::string h = R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>synapse-profiler recording</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left;font-family:monospace;max-width:60em;word-break:break-all}
li{margin:.3em 0}.none{color:#888}.note{color:#555;max-width:60em;font-size:.9em}
table.bars td,table.bars th{border:none;padding:.2em .6em .2em 0;vertical-align:middle}
.legend span{margin-right:1.2em;white-space:nowrap}
.legend i,#slowest i{display:inline-block;width:.9em;height:.9em;margin-right:.35em;vertical-align:-.1em}
td.q code{font-size:.75em;color:#444}#slowest td,#slowest th{white-space:nowrap}#slowest td.q{white-space:normal}
table.bars th.l{font-family:monospace;white-space:nowrap;background:none}.fig{font-size:.8em;color:#444;white-space:nowrap}
</style></head><body>
)";
  h += fmt::format("<h1>synapse-profiler recording</h1><p>{:.1f} s from {}; {} events in the trace{}.</p>\n",
                   s.span_s, html_escape(s.wall_start), s.events,
                   s.dropped ? fmt::format("; stopped after {} events (--max-events), {} events not written (still "
                                           "counted below)",
                                           s.events, s.dropped)
                             : "");
  // The picture first: per worker, where its wall time went.
  h += "<h2>Where each worker's wall time went</h2>\n";
  if (s.workers.empty()) {
    h += "<p class=\"none\">no worker activity recorded</p>\n";
  } else {
    h += "<p class=\"note\">Each moment of the recording counts once, for the first of these that was going on in the "
         "worker (a GC pause stops all its threads; then PostgreSQL executing one of its statements; then a database "
         "call in flight outside execution; then a disk request it caused); the rest is its Python code, the reactor "
         "and idle time.</p>\n<table class=\"bars\">\n";
    for (const auto& w : s.workers) {
      std::string figures;
      for (const auto& t : w.time_bar) {
        if (t.cause == "other") continue;
        figures += fmt::format("{}{} {}", figures.empty() ? "" : " · ", html_escape(t.cause), pct(t.share));
      }
      h += fmt::format("<tr><th class=\"l\">{}</th><td class=\"l\">{}</td><td class=\"l fig\">{}</td></tr>\n",
                       html_escape(w.worker.worker), svg_time_bar(w), figures);
    }
    h += "</table>\n" + time_bar_legend(s);
  }
  // Then the slowest moments, with the trace time to find each at.
  std::vector<std::pair<const WorkerSummary*, const SlowMoment*>> moments;
  for (const auto& w : s.workers) {
    for (const auto& m : w.slowest) moments.emplace_back(&w, &m);
  }
  std::stable_sort(moments.begin(), moments.end(),
                   [](const auto& a, const auto& b) { return a.second->duration_s > b.second->duration_s; });
  if (moments.size() > 15) moments.resize(15);
  h += "<h2>Slowest moments</h2>\n";
  if (moments.empty()) {
    h += "<p class=\"none\">none recorded</p>\n";
  } else {
    h += "<p class=\"note\">\"at\" is the time from the recording's start, which is the trace's time 0 (its first "
         "event, \"recording start\"): in Perfetto or chrome://tracing zoom to it on the worker's track. In Perfetto "
         "the query finds the slice itself: type <code>:</code> in the search box (query mode) and paste it.</p>\n"
         "<table id=\"slowest\"><tr><th>at (s)</th><th>lasted</th><th class=\"l\">worker</th><th class=\"l\">what</th>"
         "<th class=\"l\">Perfetto query (trace time in ns)</th></tr>\n";
    int n = 0;
    for (const auto& [w, m] : moments) {
      const auto at_ns = static_cast<long long>(std::llround(m->at_s * 1e9));
      h += fmt::format("<tr id=\"slow-{}\"><td>{:.6f}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">"
                       "<i style=\"background:{}\"></i>{}</td><td class=\"l q\"><code>select id, ts, dur, name from "
                       "slice where ts between {} and {}</code></td></tr>\n",
                       ++n, m->at_s, ms(m->duration_s), html_escape(w->worker.worker), cause_colour(m->cause),
                       html_escape(m->what), std::max(0LL, at_ns - 1000), at_ns + 1000);
    }
    h += "</table>\n";
  }
  h += "<h2>Findings</h2><ul id=\"findings\">\n";
  for (const auto& f : s.findings) h += "<li>" + html_escape(f) + "</li>\n";
  h += "</ul>\n";
  for (const auto& w : s.workers) {
    h += fmt::format("<h2>{}</h2>\n", html_escape(worker_title(w.worker)));
    h += "<table><tr><th class=\"l\"></th><th>count</th><th>total s</th><th>mean</th><th>p99</th><th>max</th>"
         "<th>share of time</th></tr>\n";
    h += "<tr><td class=\"l\">GC pauses</td>" + dist_cells(w.gc) + "<td>" + pct(w.gc_share) + "</td></tr>\n";
    h += "<tr><td class=\"l\">queries (libpq)</td>" + dist_cells(w.client) + "<td>" + pct(w.client_share) +
         "</td></tr>\n";
    h += "<tr><td class=\"l\">server-side execution</td>" + dist_cells(w.server) + "<td>" + pct(w.server_share) +
         "</td></tr>\n";
    h += "<tr><td class=\"l\">lock waits</td>" + dist_cells(w.lock_waits) + "<td></td></tr>\n";
    h += fmt::format("<tr><td class=\"l\">disk requests</td><td>{}</td><td colspan=\"4\">{:.1f} MiB</td><td>{}</td>"
                     "</tr></table>\n",
                     w.io_requests, w.io_bytes / 1048576.0, pct(w.disk_share));
    h += fmt::format("<p>Query time overlapped by GC pauses: {:.3f} s.</p>\n", w.query_gc_overlap_s);
    h += "<h3>GC pause distribution</h3>\n" + svg_histogram(w.gc_pause_buckets, "GC pauses") + "\n";
    h += "<h3>Top Synapse transactions by query time</h3>\n";
    if (w.top_transactions.empty()) {
      h += "<p class=\"none\">no queries</p>\n";
    } else {
      h += "<table><tr><th class=\"l\">transaction (desc)</th><th>queries</th><th>total s</th><th>mean</th><th>p99</th>"
           "<th>max</th></tr>\n";
      for (const auto& t : w.top_transactions) {
        h += "<tr><td class=\"l\">" + html_escape(t.fingerprint) + "</td>" + dist_cells(t.time) + "</tr>\n";
      }
      h += "</table>\n";
    }
    h += "<h3>Top statements by total time</h3>\n";
    if (w.top_fingerprints.empty()) {
      h += "<p class=\"none\">no queries</p>\n";
    } else {
      h += "<table><tr><th class=\"l\">fingerprint</th><th>count</th><th>total s</th><th>mean</th><th>p99</th>"
           "<th>max</th></tr>\n";
      for (const auto& f : w.top_fingerprints) {
        h += "<tr><td class=\"l\">" + html_escape(f.fingerprint) + "</td>" + dist_cells(f.time) + "</tr>\n";
      }
      h += "</table>\n";
    }
  }
  if (!s.devices.empty()) {
    h += "<h2>Disks</h2>\n<table><tr><th class=\"l\">device</th><th>requests</th><th>MiB</th><th>queue p99</th>"
         "<th>device p50</th><th>device p99</th><th>device max</th><th class=\"l\">by worker</th></tr>\n";
    for (const auto& d : s.devices) {
      std::string by;
      for (const auto& [w, n] : d.per_worker) by += fmt::format("{}{}: {}", by.empty() ? "" : ", ", w, n);
      h += fmt::format("<tr><td class=\"l\">{}</td><td>{}</td><td>{:.1f}</td><td>{}</td><td>{}</td><td>{}</td>"
                       "<td>{}</td><td class=\"l\">{}</td></tr>\n",
                       html_escape(d.device), d.requests, d.bytes / 1048576.0, ms(d.queue.p99_s),
                       ms(d.device_time.p50_s), ms(d.device_time.p99_s), ms(d.device_time.max_s), html_escape(by));
    }
    h += "</table>\n";
    for (const auto& d : s.devices) {
      h += "<h3>Device time of " + html_escape(d.device) + "</h3>\n" +
           svg_histogram(d.device_time_buckets, "device time of " + d.device) + "\n";
    }
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace sp
