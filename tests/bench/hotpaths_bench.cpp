// Google Benchmark of the agent's pure hot paths (issue 9): the exposition-format parser the scraper runs on every
// worker's body, SQL fingerprinting (every libpq record), the per-event aggregation the agent does for each ring
// buffer record, the correlator's interval unions and the GC/query overlap, and the pass-through conversion plus
// serialisation that a /metrics scrape does with 64 workers (prometheus-cpp's TextSerializer next to the exporter's
// writer). Inputs are realistic: the test workload's real scrape body (tests/data/prom/workload.txt) scaled up with
// more label values, and the Synapse-style SQL of tests/data/sql.
//
// Never a timed test: ctest runs it once with a tiny --benchmark_min_time (BenchSmoke.HotPaths) so it cannot rot.
// The data directory is SP_BENCH_DATA_DIR, or the first argument `--data-dir=DIR`.
#include <benchmark/benchmark.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/correlate/correlator.h"
#include "core/model/db_stats.h"
#include "core/correlate/desc_matcher.h"
#include "core/correlate/desc_ratio.h"
#include "core/model/gc_stats.h"
#include "core/correlate/overlap.h"
#include "core/scrape/prom_text.h"
#include "core/scrape/scraper.h"
#include "core/postgres/sql_fingerprint.h"
#include "exporter/metric_builders.h"
#include "exporter/passthrough.h"

namespace {

std::string g_data_dir = SP_BENCH_DATA_DIR;
bool g_failed = false;  // a benchmark that reports an error makes the program exit 1 (the smoke test fails)

void fail(benchmark::State& state, const std::string& why) {
  g_failed = true;
  state.SkipWithError(why.c_str());
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", p.c_str());
    std::exit(2);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The workload's real scrape, each family's samples repeated `copies` times with one more label value (a big
// homeserver has many servlets, rooms, descs per family), HELP/TYPE once per family: a valid body that grows with
// `copies` the way a real one does.
std::string scaled_exposition(int copies) {
  const std::string base = read_file(std::filesystem::path(g_data_dir) / "prom" / "workload.txt");
  std::vector<std::string> lines;
  std::istringstream in(base);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  out.reserve(base.size() * static_cast<std::size_t>(copies) * 11 / 10);
  std::size_t i = 0;
  while (i < lines.size()) {
    // A block: comment lines, then the samples up to the next comment.
    std::size_t j = i;
    while (j < lines.size() && !lines[j].empty() && lines[j][0] == '#') out += lines[j++] + "\n";
    std::size_t k = j;
    while (k < lines.size() && (lines[k].empty() || lines[k][0] != '#')) ++k;
    for (int c = 0; c < copies; ++c) {
      for (std::size_t s = j; s < k; ++s) {
        const std::string& l = lines[s];
        if (l.empty()) continue;
        if (c == 0) {
          out += l + "\n";
          continue;
        }
        const std::string shard = "shard=\"s" + std::to_string(c) + "\"";
        const std::size_t brace = l.find('{');
        const std::size_t space = l.find(' ');
        if (brace != std::string::npos && brace < space) {
          out += l.substr(0, brace + 1) + shard + "," + l.substr(brace + 1) + "\n";
        } else {
          out += l.substr(0, space) + "{" + shard + "}" + l.substr(space) + "\n";
        }
      }
    }
    i = k == i ? i + 1 : k;
  }
  return out;
}

// Synapse-style statements (the fixtures the fingerprint tests pin), without the deliberately cut probe copies.
const std::vector<std::string>& synapse_sql() {
  static const std::vector<std::string> sql = [] {
    std::vector<std::string> v;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(g_data_dir) / "sql")) {
      const std::string name = e.path().filename().string();
      if (e.path().extension() == ".sql" && name.rfind("truncated_", 0) != 0) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) v.push_back(read_file(f));
    // What Synapse sends most: psycopg2's BEGIN and COMMIT around every transaction.
    v.insert(v.end(), {"BEGIN", "COMMIT", "BEGIN", "COMMIT"});
    return v;
  }();
  return sql;
}

void BM_ParseExposition(benchmark::State& state) {
  const std::string body = scaled_exposition(static_cast<int>(state.range(0)));
  std::size_t samples = 0;
  for (auto _ : state) {
    sp::prom::ParseResult r = sp::prom::parse_prometheus_text(body);
    if (!r.ok()) {
      fail(state, r.error);
      return;
    }
    samples = 0;
    for (const auto& f : r.families) samples += f.samples.size();
    benchmark::DoNotOptimize(r.families.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
  state.counters["samples"] = static_cast<double>(samples);
}
BENCHMARK(BM_ParseExposition)->Arg(1)->Arg(16)->Arg(128)->Unit(benchmark::kMicrosecond);

void BM_FingerprintSql(benchmark::State& state) {
  const auto& sql = synapse_sql();
  std::size_t bytes = 0, i = 0;
  for (auto _ : state) {
    const std::string& s = sql[i++ % sql.size()];
    sp::SqlFingerprint fp = sp::fingerprint_sql(s);
    benchmark::DoNotOptimize(fp.id);
    bytes += s.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));  // queries/s
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["statements"] = static_cast<double>(sql.size());
}
BENCHMARK(BM_FingerprintSql);

// What the server-side family reads of each statement when no recording needs the fingerprint: the verb.
void BM_SqlVerb(benchmark::State& state) {
  const auto& sql = synapse_sql();
  std::size_t bytes = 0, i = 0;
  for (auto _ : state) {
    const std::string& s = sql[i++ % sql.size()];
    std::string verb = sp::sql_verb(s);
    benchmark::DoNotOptimize(verb.data());
    bytes += s.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));  // queries/s
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_SqlVerb);

// Synthetic event streams: 4 workers, 3 pool threads each, ~1 ms queries every ~2.5 ms per worker and a GC pause of
// ~5 ms about every 400 queries, times increasing as the agent drains them.
struct EventStream {
  struct Query {
    int worker;
    std::uint32_t tid;
    std::uint64_t start, end;
    const std::string* sql;
    std::string desc;
  };
  struct Pause {
    int worker;
    std::uint64_t start, end;
  };
  std::vector<Query> queries;
  std::vector<Pause> pauses;
  std::vector<sp::WorkerLabels> labels;
};

const EventStream& event_stream() {
  static const EventStream s = [] {
    EventStream e;
    for (int w = 0; w < 4; ++w) e.labels.push_back({"worker" + std::to_string(w), "synapse.app.generic_worker"});
    std::mt19937_64 rng(42);
    const char* descs[] = {"register_user", "get_user_by_access_token", "persist_events", "get_users_in_room",
                           "purge_history"};
    const auto& sql = synapse_sql();
    std::uint64_t t = 1'000'000'000;
    for (int i = 0; i < 40'000; ++i) {
      t += 600'000 + rng() % 100'000;
      const int w = i % 4;
      const std::uint64_t dur = 200'000 + rng() % 1'600'000;
      e.queries.push_back({w, static_cast<std::uint32_t>(1000 * (w + 1) + i % 3), t, t + dur, &sql[rng() % sql.size()],
                           descs[(i / 3) % 5]});
      if (i % 400 == 0) e.pauses.push_back({w, t + 100'000, t + 5'100'000});
    }
    return e;
  }();
  return s;
}

// Per libpq record, what LibpqFamily::consume() does (fingerprint, per (worker, verb, table) histogram, per desc
// totals) and what the agent's sink and poll_all() do with the QueryEvent (overlap with GC, correlator, desc
// matcher, desc ratio); one tick per 250 records, as the agent ticks once per drain.
void BM_AggregateQueryEvents(benchmark::State& state) {
  const EventStream& s = event_stream();
  for (auto _ : state) {
    std::map<std::pair<sp::WorkerLabels, sp::QueryKey>, sp::LatencyHistogram> series;
    std::map<std::pair<sp::WorkerLabels, std::string>, sp::DescTotals> desc;
    sp::OverlapTracker overlap;
    sp::Correlator correlator;
    sp::DescMatcher matcher;
    sp::DescLibpqRatio ratio;
    std::uint64_t overlap_ns = 0;
    std::size_t p = 0, n = 0;
    for (const auto& q : s.queries) {
      while (p < s.pauses.size() && s.pauses[p].start < q.start) {
        const auto& g = s.pauses[p++];
        overlap_ns += overlap.add_pause(static_cast<std::uint32_t>(g.worker), g.start, g.end);
        correlator.add_gc(s.labels[g.worker], g.start, g.end);
      }
      const sp::WorkerLabels& w = s.labels[q.worker];
      sp::SqlFingerprint fp = sp::fingerprint_sql(*q.sql);
      series[{w, {fp.verb, fp.table}}].record(q.end - q.start);
      std::string d = sp::sanitize_desc(q.desc);
      sp::DescTotals& t = desc[{w, d}];
      t.count += 1;
      t.sum_ns += q.end - q.start;
      overlap_ns += overlap.add_query(static_cast<std::uint32_t>(q.worker), q.start, q.end);
      correlator.add_query(w, q.start, q.end, fp.verb != "COMMIT" && fp.verb != "ROLLBACK");
      ratio.add_query(w, d, q.end, q.end - q.start);
      matcher.add_client(w, q.tid, q.start, q.end, d);
      if (++n % 250 == 0) {
        matcher.settle(q.end);
        correlator.tick(q.end);
        ratio.tick(q.end);
      }
    }
    benchmark::DoNotOptimize(overlap_ns);
    benchmark::DoNotOptimize(series.size());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * (s.queries.size() + s.pauses.size())));
}
BENCHMARK(BM_AggregateQueryEvents)->Unit(benchmark::kMillisecond);

// The same without fingerprinting (what a GC or block I/O record costs: labels lookup, histogram, correlator).
void BM_AggregateGcEvents(benchmark::State& state) {
  const EventStream& s = event_stream();
  for (auto _ : state) {
    std::map<std::pair<sp::WorkerLabels, int>, sp::GcSeries> series;
    sp::OverlapTracker overlap;
    sp::Correlator correlator;
    std::uint64_t overlap_ns = 0;
    std::size_t n = 0;
    for (const auto& q : s.queries) {  // the query stream's intervals, as pauses
      const sp::WorkerLabels& w = s.labels[q.worker];
      sp::GcSeries& g = series[{w, static_cast<int>(n % 3)}];
      g.pauses.record(q.end - q.start);
      g.collected += 100;
      overlap_ns += overlap.add_pause(static_cast<std::uint32_t>(q.worker), q.start, q.end);
      correlator.add_gc(w, q.start, q.end);
      if (++n % 250 == 0) correlator.tick(q.end);
    }
    benchmark::DoNotOptimize(overlap_ns);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * s.queries.size()));
}
BENCHMARK(BM_AggregateGcEvents)->Unit(benchmark::kMillisecond);

// The correlator's union of busy intervals (overlapping queries of 3 pool threads), then the covered time over a
// window, as the time share does on each scrape.
void BM_IntervalUnion(benchmark::State& state) {
  const EventStream& s = event_stream();
  std::uint64_t covered = 0;
  for (auto _ : state) {
    sp::IntervalUnion u;
    for (const auto& q : s.queries) u.add(q.start, q.end);
    covered = u.covered(s.queries.front().start, s.queries.back().end);
    benchmark::DoNotOptimize(covered);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * s.queries.size()));
  state.counters["covered_share"] =
      static_cast<double>(covered) / static_cast<double>(s.queries.back().end - s.queries.front().start);
}
BENCHMARK(BM_IntervalUnion)->Unit(benchmark::kMillisecond);

// Query/GC overlap per process (OverlapTracker): every query against the pauses of its own process.
void BM_Overlap(benchmark::State& state) {
  const EventStream& s = event_stream();
  for (auto _ : state) {
    sp::OverlapTracker overlap;
    std::uint64_t ns = 0;
    std::size_t p = 0;
    for (const auto& q : s.queries) {
      while (p < s.pauses.size() && s.pauses[p].start < q.start) {
        ns += overlap.add_pause(static_cast<std::uint32_t>(s.pauses[p].worker), s.pauses[p].start, s.pauses[p].end);
        ++p;
      }
      ns += overlap.add_query(static_cast<std::uint32_t>(q.worker), q.start, q.end);
    }
    benchmark::DoNotOptimize(ns);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * (s.queries.size() + s.pauses.size())));
}
BENCHMARK(BM_Overlap)->Unit(benchmark::kMillisecond);

// What a /metrics scrape spends on pass-through series: N workers' parsed scrapes (the workload's real body each)
// turned into prometheus-cpp families with worker labels, then serialised as text.
// The pass-through part of a /metrics scrape with state.range(0) workers: conversion to families plus serialisation
// by `serialize` (prometheus-cpp's TextSerializer, which /metrics used, or the exporter's writer, which it uses).
template <typename Serialize>
void passthrough_scrape(benchmark::State& state, Serialize serialize) {
  const std::string body = read_file(std::filesystem::path(g_data_dir) / "prom" / "workload.txt");
  sp::prom::ParseResult parsed = sp::prom::parse_prometheus_text(body);
  if (!parsed.ok()) {
    fail(state, parsed.error);
    return;
  }
  auto families = std::make_shared<const std::vector<sp::prom::Family>>(std::move(parsed.families));
  std::map<std::string, sp::ScrapeResult> latest;
  for (int i = 0; i < state.range(0); ++i) {
    sp::ScrapeResult r;
    r.worker_app = "synapse.app.generic_worker";
    r.url = "http://127.0.0.1:1/_synapse/metrics";
    r.up = true;
    r.families = families;
    latest["worker" + std::to_string(i)] = r;
  }
  sp::exporter::PassthroughFilter filter;
  std::size_t out_bytes = 0;
  for (auto _ : state) {
    std::string text = serialize(sp::exporter::passthrough_metrics(latest, filter));
    out_bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["out_bytes"] = static_cast<double>(out_bytes);
}

void BM_PassthroughSerialize(benchmark::State& state) {
  const prometheus::TextSerializer serializer;
  passthrough_scrape(state, [&](const auto& families) { return serializer.Serialize(families); });
}
BENCHMARK(BM_PassthroughSerialize)->Arg(4)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_PassthroughWrite(benchmark::State& state) {
  passthrough_scrape(state, [](const auto& families) { return sp::exporter::to_text(families); });
}
BENCHMARK(BM_PassthroughWrite)->Arg(4)->Arg(64)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    if (a.rfind("--data-dir=", 0) == 0) {
      g_data_dir = std::string(a.substr(11));
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
