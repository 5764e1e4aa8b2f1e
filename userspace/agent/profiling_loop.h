// The profiling loop shared by `run` and `record`: discovery, the ordered list of probe families, the ring waker,
// the Synapse metrics scraper and the correlation hub, driven by one scanning thread. It owns no policy of its own:
// each family decides what to do with a scan, the hub what to correlate; the loop only keeps the order
//   scan /proc -> every family's update() (list order) -> the hub's worker list -> scrape targets
//   every 250 ms: every family's drain() (ring buffers) -> the hub's flush() with the scrapes that finished
//   every map_read_interval (1 s): every family's poll() (ring buffers and kernel maps) in place of the drain
//   a filling ring buffer: every family's drain() at once
// and the threads apart (the scanning thread feeds, the exporter's threads read).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/probe_family.h"
#include "core/correlate/hub.h"
#include "core/model/events.h"
#include "core/proc/discovery.h"
#include "core/scrape/scraper.h"
#include "core/util/ring_waker.h"

namespace sp::agent {

struct LoopOptions {
  std::string proc_root = "/proc";
  std::chrono::nanoseconds rescan_interval = std::chrono::seconds(5);
  // How often the families' kernel maps (totals, histograms) are read. Events in the ring buffers go to the hub every
  // 250 ms whatever this is; the maps only feed /metrics, scraped every 15 s or more, and walking them costs a bpf()
  // call per entry: at 250 ms that was a third of an idle agent's CPU (issue 20).
  std::chrono::nanoseconds map_read_interval = std::chrono::seconds(1);
  ScrapeOptions scrape;
  HubOptions hub;
};

// The loop's own counters (synapse_profiler_probe_polls_total and friends).
struct LoopCounts {
  std::uint64_t polls = 0;         // completed poll rounds (kernel maps and ring buffers read)
  std::uint64_t early_drains = 0;  // ring drains a filling ring asked for between two polls
  std::uint64_t scans = 0;         // completed discovery scans
};

using Families = std::vector<std::unique_ptr<ProbeFamily>>;

class ProfilingLoop {
 public:
  // `scan`: one discovery scan (core/proc/discovery.h scan() with the CLI's options; tests pass a scripted one).
  ProfilingLoop(LoopOptions options, std::function<ScanResult()> scan, Families families);
  ~ProfilingLoop();  // stop()s
  ProfilingLoop(const ProfilingLoop&) = delete;
  ProfilingLoop& operator=(const ProfilingLoop&) = delete;

  // Another consumer of every event besides the hub (a recording). Before first_scan().
  void add_sink(EventSink* sink) { fanout_.add(sink); }

  // Starts every family in order; each that cannot is reported and the others go on. False when no family that is
  // not optional started (nothing to run for); `first_error` then says why the first one failed.
  bool start_families(std::string& first_error);
  // One scan on the calling thread: attaches to what runs now (before the agent says it is up).
  void first_scan() { rescan(); }
  // The scraper and the scanning thread.
  void start();
  // Joins the scanning thread, drains what is left in the ring buffers once more, stops the scraper. Idempotent.
  void stop();

  // Read side, any thread.
  std::vector<WorkerInfo> workers() const;
  const Families& families() const { return families_; }
  HubSnapshot hub_snapshot() const { return hub_.snapshot(); }
  std::map<std::string, ScrapeResult> scrapes() const { return scraper_.latest(); }
  LoopCounts counts() const { return {polls_.load(), early_drains_.load(), scans_.load()}; }

  // The scanning thread's steps, public for tests that drive the loop without its thread.
  void rescan();
  void poll_all();     // every family's poll(), then the hub's flush
  void flush_events(); // every family's drain(), then the hub's flush: the 250 ms round between two poll_all()
  void drain_rings();

 private:
  void scan_loop();
  void trim_heap_if_worth_it();
  void flush_hub();
  std::vector<ScrapeTarget> scrape_targets(const ScanResult& result) const;

  const LoopOptions options_;
  std::function<ScanResult()> scan_;
  Families families_;
  DiscoveryState state_;  // scanning thread only (and the caller of first_scan() before start())
  CorrelationHub hub_;
  EventFanout fanout_;  // the hub first, then added sinks
  Scraper scraper_;
  std::uint64_t scrape_generation_ = 0;  // scraper_.generation() at the last copy; scanning thread only
  RingWaker waker_;  // the scanning thread waits here: the poll timer, a filling ring, or stop
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> polls_{0}, early_drains_{0}, scans_{0};
  std::chrono::steady_clock::time_point last_trim_{};  // scanning thread only
  mutable std::mutex mutex_;
  std::vector<WorkerInfo> workers_;  // of the last scan; guarded by mutex_
};

}  // namespace sp::agent
