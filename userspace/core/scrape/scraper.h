// Scrapes each Synapse worker's own metrics endpoint (/_synapse/metrics) in the background and keeps the latest
// parsed result per worker, for the pass-through families, `synapse_up` and the correlator (which compares eBPF GC
// time with Synapse's python_gc_time). The endpoints are other processes' sockets: every body is bounded, every
// transfer has a deadline, and a malformed, slow or hostile endpoint only makes its own worker's result "down".
//
// Concurrency (decision): each round runs the targets on a small pool of threads (min(targets, max_parallel)),
// each doing a blocking libcurl easy transfer plus the parse, so a hung endpoint holds one thread for at most
// `timeout` and delays no other target, and parsing large bodies runs in parallel. Rounds start every `interval`
// (a round that overruns is followed at once by the next, never by a burst). set_targets() with a changed set
// starts a round at once, so a new worker gets a result without waiting an interval. stop() aborts transfers in
// flight through libcurl's progress callback (within about a second) and joins.
//
// HTTP policy: http:// and https:// only (other schemes fail before any I/O); no redirects followed (a 3xx is an
// error: a worker's metrics URL does not move); no proxy, whatever the environment says (the endpoints are local or
// in-cluster); `Accept: text/plain;version=0.0.4`; any content encoding libcurl decodes (gzip, deflate), with the
// size cap applied to the DECODED bytes in the write callback, so a compression bomb stops at the cap too; a non-2xx
// status is an error. Memory per round is at most max_parallel x (max_body_bytes + the parsed families).
//
// A failed scrape (transport error, non-2xx, body over the cap, parse error) gives up=false, the error text and no
// families: series of a worker that cannot be scraped disappear rather than repeat stale values.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/proc/pod_identity.h"
#include "core/scrape/prom_text.h"

namespace sp {

struct ScrapeTarget {
  std::string worker;      // key of the results; unique among the targets
  std::string worker_app;
  std::string url;         // http:// or https://
  std::optional<PodLabels> pod = std::nullopt;  // the worker's pod labels (node-wide mode), for labelling
  // The worker's network namespace when it is not the agent's (node-wide mode: a pod's worker listens on the pod's
  // loopback): the connection is opened inside it. Empty: the agent's own. The inode guards against PID reuse.
  std::string netns_path = {};
  std::uint64_t netns_inode = 0;
  bool operator==(const ScrapeTarget&) const = default;
};

struct ScrapeOptions {
  std::chrono::milliseconds interval{15'000};
  std::chrono::milliseconds timeout{5'000};  // the whole transfer: connect, request, body
  std::size_t max_body_bytes = 16 * 1024 * 1024;  // decoded
  std::size_t max_parallel = 8;                   // transfers at once
  prom::ParseLimits limits;
};

struct ScrapeResult {
  std::string worker_app;  // the target's, for labelling
  std::optional<PodLabels> pod = std::nullopt;  // likewise
  std::string url;
  bool up = false;
  std::string error;  // empty when up: "GET http://...: HTTP 500", "parse http://...: line 42: ..."
  double duration_seconds = 0;  // transfer plus parse
  std::chrono::system_clock::time_point when;  // when the scrape started
  std::chrono::steady_clock::time_point started;  // the same moment on CLOCK_MONOTONIC, the probes' clock
  std::shared_ptr<const std::vector<prom::Family>> families;  // null unless up
};

// One scrape, synchronously: transfer (bounded by options.timeout and options.max_body_bytes) then parse. `cancel`,
// when given and set, aborts the transfer. Never throws (std::bad_alloc aside).
ScrapeResult scrape_target(const ScrapeTarget& target, const ScrapeOptions& options,
                           const std::atomic<bool>* cancel = nullptr);

class Scraper {
 public:
  using Target = ScrapeTarget;

  explicit Scraper(ScrapeOptions options = {});
  ~Scraper();  // stop()s
  Scraper(const Scraper&) = delete;
  Scraper& operator=(const Scraper&) = delete;

  // Replaces the target list. Results of workers no longer listed are dropped; a target whose worker repeats an
  // earlier one is ignored (with a warning). A changed list triggers a round at once when running.
  void set_targets(std::vector<Target> targets);

  void start();  // starts the background thread; a second call does nothing
  void stop();   // aborts transfers in flight and joins; idempotent

  // One round over the current targets, in the calling thread (plus the pool), results stored; for tests and for
  // callers that drive the schedule themselves. Must not be called while the background thread runs; does nothing
  // after stop() (until start()).
  void scrape_round();

  // A scrape of one target with this scraper's options; stores nothing.
  ScrapeResult scrape_once(const Target& target) const;

  // Latest result per worker: only workers among the current targets that have been scraped at least once (a new
  // worker has no entry until its first scrape ends). A warning is logged when a worker goes down, info when it
  // comes back; repeated failures only at debug level.
  std::map<std::string, ScrapeResult> latest() const;

  // Bumped whenever a result is stored or dropped: a caller polling for new scrapes copies latest() only when this
  // moved since its last look (the agent polls every 250 ms; scrapes end every --scrape-interval).
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  const ScrapeOptions& options() const { return options_; }

 private:
  void run();
  void round(const std::vector<Target>& targets);

  const ScrapeOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Target> targets_;
  bool targets_changed_ = false;
  std::map<std::string, ScrapeResult> results_;
  std::atomic<std::uint64_t> generation_{0};  // written under mutex_
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace sp
