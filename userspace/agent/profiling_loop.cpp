#include "agent/profiling_loop.h"

#include <fmt/core.h>
#include <malloc.h>

#include "core/proc/netns.h"
#include "core/util/clock.h"
#include "core/util/duration.h"
#include "core/util/log.h"

namespace sp::agent {
ProfilingLoop::ProfilingLoop(LoopOptions options, std::function<ScanResult()> scan, Families families)
    : options_(std::move(options)), scan_(std::move(scan)), families_(std::move(families)), hub_(options_.hub),
      scraper_(options_.scrape) {
  fanout_.add(&hub_);
  for (auto& f : families_) f->set_sink(&fanout_);
}

ProfilingLoop::~ProfilingLoop() { stop(); }

bool ProfilingLoop::start_families(std::string& first_error) {
  int started = 0;
  for (auto& f : families_) {
    std::string why;
    if (f->start(why)) {
      started += f->optional() ? 0 : 1;
      continue;
    }
    if (f->optional()) {
      log::info("{} probes off: {}", f->name(), why);
      continue;
    }
    log::warn("{} probes unavailable: {}", f->name(), why);
    if (first_error.empty()) first_error = why;
  }
  // Every ring the BPF side may ask to have drained early (a burst filling it before the next 250 ms tick).
  for (const auto& f : families_) {
    for (int fd : f->ring_fds()) {
      if (std::string why; !waker_.watch(fd, why)) log::warn("{}: its records are drained every 250 ms only", why);
    }
  }
  return started > 0;
}

void ProfilingLoop::start() {
  scraper_.start();
  thread_ = std::thread([this] { scan_loop(); });
}

void ProfilingLoop::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  waker_.interrupt();
  thread_.join();
  poll_all();  // what ended before the stop and is still in the ring buffers
  scraper_.stop();
}

std::vector<WorkerInfo> ProfilingLoop::workers() const {
  std::lock_guard lock(mutex_);
  return workers_;
}

// Ring buffers are drained and their events handed to the hub every 250 ms, and at once when one fills past a quarter
// (the BPF side never wakes us per event: RingWaker; such an early drain leaves the hub's flush to the timer). The
// kernel maps are read every map_read_interval (1 s), in a full poll that takes the place of that round's drain.
// Discovery runs every --rescan-interval.
void ProfilingLoop::scan_loop() {
  using Clock = std::chrono::steady_clock;
  constexpr auto kEventInterval = std::chrono::milliseconds(250);
  auto next_scan = Clock::now() + options_.rescan_interval;
  auto next_round = Clock::now() + kEventInterval;
  auto next_map_read = Clock::now() + options_.map_read_interval;
  while (!stopping_) {
    const auto now = Clock::now();
    const auto wake_at = std::min(next_scan, next_round);
    if (wake_at > now) {
      // Rounded up: a wait rounded down to 0 ms would spin until the deadline.
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now);
      if (waker_.wait(left) == RingWaker::Woken::Ring) {
        drain_rings();
        ++early_drains_;
        continue;
      }
    }
    if (stopping_) break;
    if (Clock::now() >= next_scan) {
      rescan();
      next_scan = Clock::now() + options_.rescan_interval;
      trim_heap_if_worth_it();
    }
    if (Clock::now() >= next_map_read) {
      poll_all();
      ++polls_;
      next_map_read = Clock::now() + options_.map_read_interval;
    } else {
      flush_events();
    }
    next_round = Clock::now() + kEventInterval;
  }
}

// Gives freed heap back to the kernel, but only when there is enough of it to matter. A burst of workers (a
// deployment rolling 64 pods) or one large exposition leaves glibc's arenas at their high-water mark, and RSS would
// only ever grow without a trim. Trimming after every rescan, as the agent did, cost more than it saved in steady
// state: the few MB that every 250 ms poll, scrape and rescan allocate and free again were handed back
// (malloc_trim madvises every free page, not just the top of the heap) and faulted in again at the next poll, which
// showed up as page-table work in the agent's profile at Synapse's rates (issue 20). So: only when the arenas hold
// more than kTrimFreeBytes free (what a burst leaves; steady state stays well under it), and at most once per
// kTrimEvery, so that a workload which frees and regrows that much on every scrape pays once a minute.
void ProfilingLoop::trim_heap_if_worth_it() {
  constexpr std::size_t kTrimFreeBytes = 8u << 20;
  constexpr auto kTrimEvery = std::chrono::minutes(1);
  const auto now = std::chrono::steady_clock::now();
  if (last_trim_ != std::chrono::steady_clock::time_point{} && now - last_trim_ < kTrimEvery) return;
  const struct mallinfo2 heap = mallinfo2();  // walks the arenas' free lists: microseconds with two arenas
  if (heap.fordblks < kTrimFreeBytes) return;
  malloc_trim(0);
  last_trim_ = now;
}

void ProfilingLoop::drain_rings() {
  for (auto& f : families_) f->drain();
}

void ProfilingLoop::poll_all() {
  for (auto& f : families_) f->poll();
  flush_hub();
}

void ProfilingLoop::flush_events() {
  drain_rings();
  flush_hub();
}

void ProfilingLoop::flush_hub() {
  // Scrapes end every --scrape-interval, polls come every 250 ms: copy the results only when there are new ones.
  std::map<std::string, ScrapeResult> scraped;
  if (const std::uint64_t g = scraper_.generation(); g != scrape_generation_) {
    scrape_generation_ = g;
    scraped = scraper_.latest();
  }
  for (const auto& s : hub_.flush(monotonic_ns(), scraped)) fanout_.synapse_scrape(s);
}

void ProfilingLoop::rescan() {
  ScanResult result = scan_();
  auto diff = state_.update(result);
  for (const auto& w : diff.new_warnings) log::warn("{}", w);  // each problem once, not on every rescan
  for (const auto& w : diff.added) {
    log::info("found Synapse process pid {} worker {} ({}){}", w.host_pid, w.worker_name, w.worker_app,
              w.metrics_url ? " metrics " + *w.metrics_url : std::string(" without a metrics URL"));
  }
  for (const auto& w : diff.removed) log::info("Synapse process pid {} worker {} is gone", w.host_pid, w.worker_name);
  // In list order: a family may read an earlier one's decisions (block I/O reads postgres's). Families drain their
  // last events for a removed process during update(), so the hub forgets it only after them.
  for (auto& f : families_) f->update(result, diff);
  // A process that exited between being found and being attached (a crash loop, a short-lived helper) is skipped
  // with one warning naming it; its remains are dropped at the next rescan like any exited process.
  for (const auto& w : diff.added) {
    if (!process_running(options_.proc_root, w.key)) {
      log::warn("Synapse process pid {} worker {} exited before it could be attached; skipped", w.host_pid,
                w.worker_name);
    }
  }
  scraper_.set_targets(scrape_targets(result));
  for (const auto& w : hub_.update_workers(result, diff, monotonic_ns())) {
    log::info("worker {} has been gone for {}: its series are dropped", w.worker,
              format_duration(std::chrono::nanoseconds(options_.hub.forget_after_ns.value_or(0))));
    for (auto& f : families_) f->forget_worker(w);
  }
  {
    std::lock_guard lock(mutex_);
    workers_ = std::move(result.workers);
  }
  ++scans_;
}

std::vector<ScrapeTarget> ProfilingLoop::scrape_targets(const ScanResult& result) const {
  std::vector<ScrapeTarget> targets;
  const std::uint64_t own_netns = netns_inode("/proc/thread-self/ns/net");
  for (const auto& w : result.workers) {
    if (!w.metrics_url) continue;
    ScrapeTarget t{w.worker_name, w.worker_app, *w.metrics_url, labels_of(w).pod};
    // A worker in another network namespace (a pod seen from the node) is scraped from inside it: its 127.0.0.1 is
    // the pod's loopback, not ours.
    std::string netns_path = fmt::format("{}/{}/ns/net", options_.proc_root, w.host_pid);
    const std::uint64_t netns = netns_inode(netns_path);
    if (netns != 0 && own_netns != 0 && netns != own_netns) {
      t.netns_path = std::move(netns_path);
      t.netns_inode = netns;
    }
    targets.push_back(std::move(t));
  }
  return targets;
}

}  // namespace sp::agent
