// The profiling loop and the exposition over fake probe families: a test family keeps the contract, writes every
// call it gets into a log shared by all the families of a test, and emits the events a test scripts for it. The loop
// is driven step by step (first_scan(), rescan(), poll_all(), drain_rings()); its thread and scraper never start.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "family_test_util.h"
#include "agent/exposition.h"
#include "agent/probe_family.h"
#include "agent/profiling_loop.h"
#include "exporter/metric_builders.h"

namespace {

using Log = std::vector<std::string>;

constexpr std::uint64_t kMs = 1'000'000;
const std::string kApp = "synapse.app.generic_worker";
const sp::WorkerLabels kW1{"w1", kApp};
const sp::WorkerLabels kW2{"w2", kApp};

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::string pids(const std::vector<sp::WorkerInfo>& workers) {
  std::string out;
  for (const auto& w : workers) out += (out.empty() ? "" : ",") + std::to_string(w.host_pid);
  return out;
}

class FakeFamily : public sp::agent::ProbeFamily {
 public:
  FakeFamily(std::string name, Log& log) : name_(std::move(name)), log_(log) {}

  // Script.
  std::optional<std::string> fail_start;  // start() fails with this
  bool is_optional = false;
  sp::agent::FamilyCounts family_counts;
  std::vector<sp::ProbeStatus> status;
  std::function<void(sp::EventSink&, const sp::ScanDiff&)> on_update;
  std::function<void(sp::EventSink&)> on_poll;

  const char* name() const override { return name_.c_str(); }
  bool start(std::string& why_not) override {
    log_.push_back(name_ + " start");
    if (fail_start) {
      why_not = *fail_start;
      return false;
    }
    started_ = true;
    return true;
  }
  bool started() const override { return started_; }
  bool optional() const override { return is_optional; }
  void update(const sp::ScanResult& current, const sp::ScanDiff& diff) override {
    log_.push_back(name_ + " update [" + pids(current.workers) + "] +[" + pids(diff.added) + "] -[" +
                   pids(diff.removed) + "]");
    if (on_update) on_update(sink(), diff);
  }
  void drain() override { log_.push_back(name_ + " drain"); }
  void poll() override {
    log_.push_back(name_ + " poll");
    if (on_poll) on_poll(sink());
  }
  void forget_worker(const sp::WorkerLabels& w) override { log_.push_back(name_ + " forget " + w.worker); }
  sp::agent::FamilyCounts counts() const override { return family_counts; }
  std::vector<sp::ProbeStatus> attach_status() const override { return status; }
  // One series of its own, carrying what it read from the hub snapshot it was given (w1's overlap, in seconds).
  void collect(const sp::HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override {
    auto it = hub.overlap_ns.find(kW1);
    const double overlap = it == hub.overlap_ns.end() ? -1 : static_cast<double>(it->second) / 1e9;
    out.push_back(sp::exporter::gauge_metric("test_" + name_ + "_hub_overlap_seconds", "What the fake family saw.",
                                             {sp::exporter::gauge_point({}, overlap)}));
  }

 private:
  std::string name_;
  Log& log_;
  bool started_ = false;
};

// Counts what reaches it.
class CountingSink : public sp::EventSink {
 public:
  void gc_pause(const sp::GcPause&) override { ++gc; }
  void query(const sp::QueryEvent&) override { ++queries; }
  void lock_wait(const sp::LockWait&) override { ++lock_waits; }
  void io_request(const sp::IoEvent&) override { ++ios; }
  int gc = 0, queries = 0, lock_waits = 0, ios = 0;
};

sp::WorkerInfo process(int pid, const sp::WorkerLabels& labels) {
  return sp::test::make_worker(pid, labels.worker, labels.worker_app);
}

// Returns the scripted scans in turn, then the last one again.
std::function<sp::ScanResult()> scripted(std::vector<std::vector<sp::WorkerInfo>> scans) {
  auto left = std::make_shared<std::deque<std::vector<sp::WorkerInfo>>>(scans.begin(), scans.end());
  return [left] {
    sp::ScanResult r;
    r.workers = left->front();
    if (left->size() > 1) left->pop_front();
    return r;
  };
}

// The loop over `names`' fake families, which the test keeps pointers to.
struct Rig {
  Log log;
  std::vector<FakeFamily*> fakes;
  std::unique_ptr<sp::agent::ProfilingLoop> loop;

  Rig(std::vector<std::string> names, std::vector<std::vector<sp::WorkerInfo>> scans,
      sp::agent::LoopOptions options = {}) {
    sp::agent::Families families;
    for (const auto& n : names) {
      auto f = std::make_unique<FakeFamily>(n, log);
      fakes.push_back(f.get());
      families.push_back(std::move(f));
    }
    // No process of the scripts runs: a /proc root without them (the loop only warns about it).
    options.proc_root = "/nonexistent-proc";
    loop = std::make_unique<sp::agent::ProfilingLoop>(std::move(options), scripted(std::move(scans)),
                                                      std::move(families));
  }
  FakeFamily& fake(std::size_t i) { return *fakes.at(i); }
};

}  // namespace

TEST(ProfilingLoop, StartFamiliesGoesOnPastAFamilyThatCannotStart) {
  Rig rig({"gc", "libpq", "postgres"}, {{}});
  rig.fake(1).fail_start = "libpq: no libpq mapped";
  std::string first_error;
  EXPECT_TRUE(rig.loop->start_families(first_error));
  EXPECT_EQ(rig.log, (Log{"gc start", "libpq start", "postgres start"}));
  EXPECT_TRUE(rig.fake(0).started());
  EXPECT_FALSE(rig.fake(1).started());
  EXPECT_TRUE(rig.fake(2).started());
}

TEST(ProfilingLoop, StartFamiliesFailsWithTheFirstErrorWhenNoRequiredFamilyStarted) {
  Rig rig({"gc", "libpq", "nvme"}, {{}});
  rig.fake(0).fail_start = "gc: no BTF";
  rig.fake(1).fail_start = "libpq: no uprobes";
  rig.fake(2).is_optional = true;  // starts, but an optional family alone is nothing to run for
  std::string first_error;
  EXPECT_FALSE(rig.loop->start_families(first_error));
  EXPECT_EQ(first_error, "gc: no BTF");
  EXPECT_EQ(rig.log, (Log{"gc start", "libpq start", "nvme start"}));
  EXPECT_TRUE(rig.fake(2).started());
}

TEST(ProfilingLoop, AnOptionalFamilyThatCannotStartIsNoFailure) {
  Rig rig({"gc", "nvme"}, {{}});
  rig.fake(1).is_optional = true;
  rig.fake(1).fail_start = "nvme: no nvme driver";
  std::string first_error;
  EXPECT_TRUE(rig.loop->start_families(first_error));
  EXPECT_EQ(first_error, "");
}

TEST(ProfilingLoop, EveryScanPollAndDrainGoesToEveryFamilyInListOrder) {
  const auto p100 = process(100, kW1), p200 = process(200, kW2);
  Rig rig({"gc", "postgres", "block_io"}, {{p100}, {p100, p200}, {p200}});
  rig.loop->first_scan();
  rig.loop->rescan();
  rig.loop->rescan();
  EXPECT_EQ(rig.log, (Log{"gc update [100] +[100] -[]", "postgres update [100] +[100] -[]",
                          "block_io update [100] +[100] -[]", "gc update [100,200] +[200] -[]",
                          "postgres update [100,200] +[200] -[]", "block_io update [100,200] +[200] -[]",
                          "gc update [200] +[] -[100]", "postgres update [200] +[] -[100]",
                          "block_io update [200] +[] -[100]"}));
  ASSERT_EQ(rig.loop->workers().size(), 1u);
  EXPECT_EQ(rig.loop->workers()[0].host_pid, 200);
  EXPECT_EQ(rig.loop->counts().scans, 3u);

  rig.log.clear();
  rig.loop->poll_all();
  rig.loop->drain_rings();
  EXPECT_EQ(rig.log, (Log{"gc poll", "postgres poll", "block_io poll", "gc drain", "postgres drain",
                          "block_io drain"}));
}

TEST(ProfilingLoop, EveryFamilyForgetsAWorkerGoneLongerThanForgetAfter) {
  sp::agent::LoopOptions options;
  options.hub.forget_after_ns = 1;
  const auto p100 = process(100, kW1), p200 = process(200, kW2);
  Rig rig({"gc", "libpq"}, {{p100, p200}, {p200}}, options);
  rig.loop->first_scan();
  rig.loop->rescan();  // w1 gone from now on
  for (const auto& line : rig.log) EXPECT_EQ(line.find("forget"), std::string::npos) << line;
  rig.log.clear();
  rig.loop->rescan();  // gone for more than 1 ns
  EXPECT_EQ(rig.log, (Log{"gc update [200] +[] -[]", "libpq update [200] +[] -[]", "gc forget w1",
                          "libpq forget w1"}));
  rig.log.clear();
  rig.loop->rescan();  // forgotten once only
  EXPECT_EQ(rig.log, (Log{"gc update [200] +[] -[]", "libpq update [200] +[] -[]"}));
}

// A pause [10, 260) ms and a query [0, 300) ms of process 100 overlap by 250 ms; the lock wait has no client call
// around it, so the hub's flush in poll_all() decides it as unmatched.
TEST(ProfilingLoop, EventsAFamilyEmitsReachTheHubAndEveryAddedSink) {
  const auto p100 = process(100, kW1);
  Rig rig({"gc", "libpq"}, {{p100}});
  rig.fake(0).on_poll = [](sp::EventSink& sink) {
    sp::GcPause p;
    p.worker = kW1;
    p.tgid = 100;
    p.start_ns = 10 * kMs;
    p.end_ns = 260 * kMs;
    sink.gc_pause(p);
    sp::IoEvent io;
    io.worker = kW1;
    io.start_ns = 10 * kMs;
    io.complete_ns = 20 * kMs;
    sink.io_request(io);
  };
  rig.fake(1).on_poll = [](sp::EventSink& sink) {
    sp::QueryEvent q;
    q.worker = kW1;
    q.tgid = 100;
    q.start_ns = 0;
    q.end_ns = 300 * kMs;
    sink.query(q);
    sp::LockWait l;
    l.worker = kW1;
    l.backend = 500;
    l.start_ns = 400 * kMs;
    l.end_ns = 450 * kMs;
    sink.lock_wait(l);
  };
  CountingSink recorder;
  rig.loop->add_sink(&recorder);
  rig.loop->first_scan();
  rig.loop->poll_all();

  EXPECT_EQ(recorder.gc, 1);
  EXPECT_EQ(recorder.queries, 1);
  EXPECT_EQ(recorder.lock_waits, 1);
  EXPECT_EQ(recorder.ios, 1);
  const auto hub = rig.loop->hub_snapshot();
  EXPECT_EQ(hub.overlap_ns.at(kW1), 250 * kMs);
  ASSERT_EQ(hub.desc_server.count({kW1, "unmatched"}), 1u);
  EXPECT_EQ(hub.desc_server.at({kW1, "unmatched"}).lock_wait_ns, 50 * kMs);
}

// What a family drains for a removed process in its update() is counted, and does not bring the worker back into
// the hub's correlation once the hub has let it go.
TEST(ProfilingLoop, TheLastEventsOfAGoneWorkerDoNotBringItBack) {
  const auto p100 = process(100, kW1), p200 = process(200, kW2);
  Rig rig({"gc", "postgres"}, {{p100, p200}, {p200}});
  rig.fake(0).on_update = [](sp::EventSink& sink, const sp::ScanDiff& diff) {
    if (diff.removed.empty()) return;
    sp::GcPause p;
    p.worker = kW1;
    p.tgid = 100;
    p.start_ns = now_ns() - 300 * kMs;
    p.end_ns = now_ns() - 200 * kMs;
    sink.gc_pause(p);
  };
  rig.fake(1).on_update = [](sp::EventSink& sink, const sp::ScanDiff& diff) {
    if (diff.removed.empty()) return;
    sp::LockWait l;
    l.worker = kW1;
    l.backend = 500;
    l.start_ns = now_ns() - 300 * kMs;
    l.end_ns = now_ns() - 200 * kMs;
    sink.lock_wait(l);
  };
  rig.loop->first_scan();
  rig.loop->poll_all();
  ASSERT_EQ(rig.loop->hub_snapshot().correlation.count(kW1), 1u);
  rig.loop->rescan();
  rig.loop->poll_all();
  const auto hub = rig.loop->hub_snapshot();
  EXPECT_EQ(hub.correlation.count(kW1), 0u);
  EXPECT_EQ(hub.correlation.count(kW2), 1u);
  // The lock wait was decided as the worker went, not dropped.
  ASSERT_EQ(hub.desc_server.count({kW1, "unmatched"}), 1u);
  EXPECT_EQ(hub.desc_server.at({kW1, "unmatched"}).lock_waits, 1u);
}

TEST(Exposition, CollectHasEveryFamilysSeriesHealthAndTheLoopsCounters) {
  const auto p100 = process(100, kW1);
  Rig rig({"gc", "block_io"}, {{p100}});
  auto& gc = rig.fake(0);
  gc.family_counts.events_lost = 3;
  gc.family_counts.hook_misses = 1;
  gc.status.push_back({kW1, 100, "gc", "usdt", true, ""});
  gc.on_poll = [](sp::EventSink& sink) {
    sp::GcPause p;
    p.worker = kW1;
    p.tgid = 100;
    p.start_ns = 0;
    p.end_ns = 250 * kMs;
    sink.gc_pause(p);
    sp::QueryEvent q;
    q.worker = kW1;
    q.tgid = 100;
    q.start_ns = 0;
    q.end_ns = 500 * kMs;
    sink.query(q);
  };
  auto& blockio = rig.fake(1);
  blockio.family_counts.hook_misses = 5;  // no ring buffer: no events_lost
  blockio.status.push_back({kW1, 100, "block_io", "tracepoint", false, "no such tracepoint"});
  rig.loop->first_scan();
  rig.loop->rescan();
  rig.loop->poll_all();

  const sp::agent::Exposition exposition(*rig.loop, {}, "1.2.3-test");
  const std::string text = sp::exporter::to_text(exposition.collect());
  const std::string w1 = "worker=\"w1\",worker_app=\"" + kApp + "\"";
  const std::vector<std::string> expected{
      "test_gc_hub_overlap_seconds 0.25\n",
      "test_block_io_hub_overlap_seconds 0.25\n",
      "synapse_profiler_events_lost_total{probe=\"gc\"} 3\n",
      "synapse_profiler_hook_misses_total{probe=\"gc\"} 1\n",
      "synapse_profiler_hook_misses_total{probe=\"block_io\"} 5\n",
      "synapse_profiler_probe_attached{" + w1 + ",probe=\"gc\",method=\"usdt\"} 1\n",
      "synapse_profiler_probe_attached{" + w1 + ",probe=\"block_io\",method=\"tracepoint\"} 0\n",
      "synapse_profiler_db_query_gc_overlap_seconds_total{" + w1 + "} 0.25\n",
      "synapse_profiler_discovery_scans_total 2\n",
      "synapse_profiler_probe_polls_total 0\n",  // counted by the loop's thread only
      "synapse_profiler_probe_early_drains_total 0\n",
      "synapse_profiler_workers 1\n",
  };
  for (const auto& line : expected) EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  EXPECT_EQ(text.find("synapse_profiler_events_lost_total{probe=\"block_io\"}"), std::string::npos) << text;
  // The families' series come in list order.
  EXPECT_LT(text.find("test_gc_hub_overlap_seconds"), text.find("test_block_io_hub_overlap_seconds"));
}
