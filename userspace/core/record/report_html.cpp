#include "core/record/report_html.h"

#include <fmt/core.h>

#include <algorithm>
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
std::string svg_histogram(const std::vector<double>& values_s, const std::string& title) {
  static const double kBounds[] = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                   2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  constexpr std::size_t kN = std::size(kBounds) + 1;
  std::size_t counts[kN] = {};
  for (double v : values_s) {
    std::size_t b = 0;
    while (b < std::size(kBounds) && v > kBounds[b]) ++b;
    ++counts[b];
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
li{margin:.3em 0}.none{color:#888}
</style></head><body>
)";
  h += fmt::format("<h1>synapse-profiler recording</h1><p>{:.1f} s from {}; {} events recorded{}.</p>\n", s.span_s,
                   html_escape(s.wall_start), s.events,
                   s.dropped ? fmt::format(", {} dropped at the cap of {}", s.dropped, s.max_events) : "");
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
    h += "<h3>GC pause distribution</h3>\n" + svg_histogram(w.gc_pauses_s, "GC pauses") + "\n";
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
           svg_histogram(d.device_times_s, "device time of " + d.device) + "\n";
    }
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace sp
