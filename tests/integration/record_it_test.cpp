// `synapse-profiler record` end to end: a recording of test workers with GC, queries and disk I/O gives a trace whose
// slices match the workload's own record (counts exact, times close), a report that a real browser renders, a summary
// with the same numbers as the report and as the running exporter; Ctrl-C still writes everything; the cap holds.
#include <signal.h>
#include <sys/wait.h>

#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "../common/gunzip.h"
#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

nlohmann::json read_trace(const std::string& path) { return nlohmann::json::parse(sp::test::gunzip(path)); }

// Chromium's own JSON parser (V8's JSON.parse, what chrome://tracing's importer starts with) on the decompressed
// trace, in headless Chromium: the page parses the embedded trace and prints what it found.
std::string chromium_parse(const std::string& json, const std::string& dir) {
  std::string embedded;
  embedded.reserve(json.size());
  for (std::size_t i = 0; i < json.size(); ++i) {
    embedded += json[i];
    if (json[i] == '<' && i + 1 < json.size() && json[i + 1] == '/') embedded += '\\';  // "<\/" in JSON is "</"
  }
  const std::string page = dir + "/parse_trace.html";
  std::ofstream(page) << "<!DOCTYPE html><html><body><script type=\"application/json\" id=\"t\">" << embedded
                      << "</script><pre id=\"out\"></pre><script>"
                         "let r;try{const t=JSON.parse(document.getElementById('t').textContent);"
                         "const ev=t.traceEvents;let x=0;for(const e of ev){if(e.ph==='X'&&typeof e.ts==='number'&&"
                         "typeof e.dur==='number')x++;}"
                         "r='parsed events='+ev.length+' slices='+x+' written='+t.otherData.events;}"
                         "catch(e){r='error '+e;}document.getElementById('out').textContent=r;</script></body></html>";
  auto out = sp::test::run_command({"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                    "--dump-dom", "file://" + page});
  return out.out;
}

class RecordIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
    if (!sp::test::test_postgres()) SP_SKIP_UNLESS_BPF_REQUIRED("no test PostgreSQL: run through scripts/test.sh");
    dir_ = sp::test::make_temp_dir("sp-record-it");
    out_ = dir_ + "/out";
  }

  std::unique_ptr<Workload> start(const std::string& name, std::vector<std::string> extra) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = 4;
    spec.use_db = true;
    spec.extra_args = {"--start-gate", dir_ + "/" + name + ".gate", "--linger", "30"};
    spec.extra_args.insert(spec.extra_args.end(), extra.begin(), extra.end());
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  }

  sp::test::Process record(std::vector<std::string> args) {
    std::vector<std::string> argv = {SP_BINARY, "record", "--output", out_, "--rescan-interval", "500ms",
                                     "--scrape-interval", "1s"};
    argv.insert(argv.end(), args.begin(), args.end());
    sp::test::Process p(argv, dir_ + "/record.log");
    // It says it is recording once the first scan has attached the probes.
    EXPECT_TRUE(sp::test::wait_for([&] { return log().find("recording for") != std::string::npos; }, 20s)) << log();
    return p;
  }
  std::string log() const { return sp::test::read_text(dir_ + "/record.log"); }

  std::string dir_, out_;
};

// Counts of trace slices per (process name, category).
std::map<std::pair<std::string, std::string>, std::vector<nlohmann::json>> slices(const nlohmann::json& trace) {
  std::map<int, std::string> process;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") process[e["pid"]] = e["args"]["name"];
  }
  std::map<std::pair<std::string, std::string>, std::vector<nlohmann::json>> out;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    out[{process[e["pid"]], e["cat"]}].push_back(e);
  }
  return out;
}

}  // namespace

TEST_F(RecordIT, TraceReportAndSummaryMatchTheWorkloadAndTheExporter) {
  // Collections of 40000 objects (ms each), queries, and O_DIRECT media files.
  auto w = start("rec_worker", {"--gc-schedule", "0:10", "--garbage-per-gc", "20000", "--query-rate", "20",
                                "--io-rate", "5", "--direct-io"});
  auto other = start("rec_ignored", {"--gc-schedule", "0:10", "--query-rate", "5", "--io-rate", "0"});
  sp::test::AgentProcess agent(dir_, "500ms");
  ASSERT_TRUE(agent.running()) << agent.log();
  // Longer than the workloads' run (4 s; stretched by sqrt(time_scale()) under emulation, as Workload does).
  auto rec = record({"--duration", std::to_string(static_cast<int>(std::ceil(9 * std::sqrt(sp::test::time_scale())))) + "s",
                     "--workers", "rec_worker"});
  ASSERT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(agent.metrics(), "synapse_profiler_probe_attached",
                                      {{"worker", "rec_worker"}, {"probe", "libpq"}}) == 1.0;
      },
      10s));
  std::ofstream(dir_ + "/rec_worker.gate").put('\n');
  std::ofstream(dir_ + "/rec_ignored.gate").put('\n');
  // Three times, another client holds the worker's `users` table for 0.4 s: its backends wait on the lock.
  auto held = sp::test::hold_users_table_lock(*sp::test::test_postgres(), dir_ + "/held.txt");
  ASSERT_TRUE(held);
  const double held_us = *held * 1e6;
  auto st = rec.wait(40s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << log();

  auto truth = sp::test::read_truth(w->truth_path());
  ASSERT_FALSE(sp::test::truth_of_type(truth, "summary").empty()) << "the workload's run ended inside the recording";
  auto gate = sp::test::truth_of_type(truth, "gate");
  ASSERT_EQ(gate.size(), 1u);
  const std::int64_t gate_ns = *gate.front().integer("open_ns");

  auto trace = read_trace(out_ + "/trace.json.gz");
  auto by = slices(trace);
  const std::string proc = "worker rec_worker (synapse.app.generic_worker)";
  // GC: every collection, with durations close to the workload's own timing of each.
  auto gcs = sp::test::truth_of_type(truth, "gc");
  ASSERT_GT(gcs.size(), 20u);
  const auto& gc_slices = by[{proc, "gc"}];
  double truth_gc = 0, trace_gc = 0;
  for (const auto& g : gcs) truth_gc += static_cast<double>(*g.integer("end_ns") - *g.integer("start_ns")) / 1e3;
  for (const auto& s : gc_slices) trace_gc += s["dur"].get<double>();
  sp::test::record_compared("trace.gc_slices", static_cast<double>(gc_slices.size()), static_cast<double>(gcs.size()));
  EXPECT_EQ(gc_slices.size(), gcs.size());
  // The workload's timing also holds the Python call around the collector (measured here: up to ~0.2 ms of a few ms).
  EXPECT_NEAR(trace_gc, truth_gc, 0.15 * truth_gc);
  EXPECT_LE(trace_gc, truth_gc) << "the probes bracket the collector inside the workload's own timing";

  // Client queries: every statement after the gate, plus the BEGIN psycopg2 sends before a transaction's first.
  std::size_t statements = 0;
  double truth_exec_us = 0;
  for (const auto& q : sp::test::truth_of_type(truth, "query")) {
    if (*q.integer("start_ns") < gate_ns) continue;
    statements += 1 + (q.line.find("\"begin\":true") != std::string::npos);
    truth_exec_us += static_cast<double>(*q.integer("exec_end_ns") - *q.integer("exec_start_ns")) / 1e3;
  }
  ASSERT_GT(statements, 50u);
  double trace_client_us = 0;
  std::size_t client_after_gate = 0;
  const auto& client_slices = by[{proc, "db_client"}];
  for (const auto& s : client_slices) {
    trace_client_us += s["dur"].get<double>();
    ++client_after_gate;
    EXPECT_FALSE(s["args"]["fingerprint"].get<std::string>().empty());
  }
  // Before the gate the worker only waits (its schema was created before the recording started).
  sp::test::record_compared("trace.db_client_slices", static_cast<double>(client_after_gate),
                            static_cast<double>(statements));
  EXPECT_EQ(client_after_gate, statements);
  // Each is named by the Synapse transaction it ran in (read from the worker's Python frames), as the workload's own
  // record says.
  std::map<std::string, std::size_t> truth_desc, trace_desc;
  for (const auto& q : sp::test::truth_of_type(truth, "query")) {
    if (*q.integer("start_ns") < gate_ns) continue;
    truth_desc[*q.text("desc")] += 1 + (q.line.find("\"begin\":true") != std::string::npos);
  }
  for (const auto& s : client_slices) ++trace_desc[s["args"].value("desc", std::string())];
  EXPECT_EQ(trace_desc, truth_desc);
  EXPECT_NE(sp::test::read_text(out_ + "/summary.txt").find("transaction "), std::string::npos);
  EXPECT_LE(trace_client_us, truth_exec_us);
  EXPECT_GT(trace_client_us, 0.5 * truth_exec_us);
  const auto& server_slices = by[{"PostgreSQL for rec_worker", "db_server"}];
  EXPECT_FALSE(server_slices.empty());
  // Lock waits: on the worker's backends' lock track, as long as the holder held the table (up to three of the
  // worker's connections wait at once).
  const auto& lock_slices = by[{"PostgreSQL for rec_worker", "db_lock"}];
  double waited_us = 0;
  for (const auto& s : lock_slices) waited_us += s["dur"].get<double>();
  EXPECT_GE(lock_slices.size(), 3u);
  EXPECT_GT(waited_us, 0.5 * held_us);
  EXPECT_LT(waited_us, 3 * held_us + 100'000);
  // Disk: the worker's O_DIRECT reads and writes are on the disk's lanes, charged to it.
  std::size_t worker_disk = 0;
  for (const auto& [key, list] : by) {
    if (key.second != "disk" || key.first.rfind("disk ", 0) != 0) continue;
    for (const auto& s : list) worker_disk += s["name"] != "device" && s["args"]["worker"] == "rec_worker";
  }
  std::size_t truth_io = sp::test::truth_of_type(truth, "io").size();
  ASSERT_GT(truth_io, 5u);
  EXPECT_GE(worker_disk, truth_io) << "each O_DIRECT read or write is at least one request";
  // Nothing of the worker that was not selected.
  for (const auto& [key, list] : by) EXPECT_EQ(key.first.find("rec_ignored"), std::string::npos) << key.first;

  // summary.txt, report.html and the exporter agree on the GC count.
  const std::string summary = sp::test::read_text(out_ + "/summary.txt");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(summary, m, std::regex("GC: +([0-9]+) pauses"))) << summary;
  EXPECT_EQ(std::stoul(m[1]), gcs.size());
  ASSERT_TRUE(std::regex_search(summary, m, std::regex("lock waits ([0-9]+) "))) << summary;
  EXPECT_EQ(std::stoul(m[1]), lock_slices.size());
  const std::string report = sp::test::read_text(out_ + "/report.html");
  // The picture comes first: the worker's time bar (its GC segment as large as the summary's share) before the
  // tables, then the slowest moments, whose times are the trace's (a GC pause of the trace at the same time).
  const auto bar = report.find("data-cause=\"gc\"");
  ASSERT_NE(bar, std::string::npos) << "a GC segment in the time bar";
  EXPECT_LT(bar, report.find("<table><tr><th class=\"l\"></th><th>count</th>"));
  ASSERT_TRUE(std::regex_search(report, m, std::regex("<tr id=\"slow-1\"><td>([0-9.]+)</td><td>([0-9.]+) ms</td>")))
      << "the slowest moments table";
  {
    const double at_us = std::stod(m[1]) * 1e6, dur_us = std::stod(m[2]) * 1e3;
    bool in_trace = false;
    for (const auto& [key, list] : by) {
      for (const auto& sl : list) {
        in_trace |= std::abs(sl["ts"].get<double>() - at_us) < 1.5 && std::abs(sl["dur"].get<double>() - dur_us) < 10;
      }
    }
    EXPECT_TRUE(in_trace) << "the slowest moment at " << m[1] << " s, " << m[2] << " ms, is a slice of the trace";
  }
  EXPECT_NE(report.find("<td class=\"l\">GC pauses</td><td>" + std::to_string(gcs.size()) + "</td>"),
            std::string::npos);
  EXPECT_EQ(sp::test::metric_value(agent.metrics(), "synapse_profiler_gc_pause_seconds_count",
                                   {{"worker", "rec_worker"}, {"generation", "0"}}),
            static_cast<double>(gcs.size()));

  // The report renders in a real browser: a screenshot that is not blank.
  const std::string png = dir_ + "/report.png";
  auto shot = sp::test::run_command({"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                     "--hide-scrollbars", "--window-size=1280,900", "--screenshot=" + png,
                                     "file://" + out_ + "/report.html"});
  ASSERT_TRUE(std::filesystem::exists(png)) << shot.out;
  auto pixels = sp::test::run_command(
      {"/usr/bin/python3.11", "-c",
       "import sys; from PIL import Image; im = Image.open(sys.argv[1]).convert('L'); "
       "h = im.histogram(); print(sum(h[:200]), sum(h))",
       png});
  ASSERT_EQ(pixels.status, 0) << pixels.out;
  std::istringstream in(pixels.out);
  double dark = 0, total = 0;
  in >> dark >> total;
  EXPECT_GT(total, 0);
  EXPECT_GT(dark / total, 0.005) << "text and charts darken the page";
  // Chromium parses the decompressed trace.
  const std::string parsed = chromium_parse(sp::test::gunzip(out_ + "/trace.json.gz"), dir_);
  EXPECT_NE(parsed.find("parsed events="), std::string::npos) << parsed;
  EXPECT_NE(parsed.find("written=" + std::to_string(trace["otherData"]["events"].get<std::size_t>())),
            std::string::npos)
      << parsed;
  EXPECT_TRUE(agent.stop());
}

TEST_F(RecordIT, CtrlCStillWritesEverythingAndTheCapHolds) {
  auto w = start("rec_capped", {"--gc-schedule", "0:20", "--query-rate", "20", "--io-rate", "0"});
  auto rec = record({"--duration", "60s", "--max-events", "40"});
  std::ofstream(dir_ + "/rec_capped.gate").put('\n');
  std::this_thread::sleep_for(sp::test::scaled(2s));
  auto st = rec.stop(SIGINT, 20s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << log();
  for (const char* f : {"trace.json.gz", "report.html", "summary.txt"}) {
    EXPECT_GT(std::filesystem::file_size(out_ + "/" + f), 100u) << f;
  }
  // Ended by SIGINT mid-recording: the gzip stream is complete and the JSON well formed.
  auto trace = read_trace(out_ + "/trace.json.gz");
  EXPECT_EQ(trace["otherData"]["events"], 40);
  EXPECT_GT(trace["otherData"]["dropped"].get<int>(), 0);
  std::size_t x = 0;
  for (const auto& e : trace["traceEvents"]) x += e["ph"] == "X" && e["name"] != "device";
  EXPECT_EQ(x, 40u);
  EXPECT_NE(sp::test::read_text(out_ + "/summary.txt").find("stopped after 40 events, "), std::string::npos)
      << sp::test::read_text(out_ + "/summary.txt");
  EXPECT_NE(log().find("recording ended by SIGINT: the trace stopped after 40 events"), std::string::npos) << log();
}

TEST(RecordCli, NeedsAnOutputDirectory) {
  auto r = sp::test::run_command({SP_BINARY, "record", "--duration", "1s"});
  EXPECT_EQ(r.status, 2) << r.out;
}
