// The correlation hub: where every family's events meet every worker's scraped Synapse metrics. Pure (no libbpf,
// no threads of its own): the agent's scanning thread feeds it plain events (it is an EventSink), the scan's worker
// list and the scrapes, and the exporter's threads read snapshot(). It owns the views that need more than one
// family or a scrape:
//   - GC pause x client query overlap per process (overlap.h), as a per-worker counter;
//   - the correlator's python overhead, GC coverage and time shares (correlator.h);
//   - per-desc libpq share of Synapse's transaction time (desc_ratio.h) and server time per desc (desc_matcher.h);
//   - retention of gone workers: a worker whose every process has gone stops being correlated, and after
//     --forget-after its totals are dropped (update_workers() returns it, so that the families drop theirs too).
//
// Threads: the EventSink methods, update_workers() and flush() run on one thread; snapshot() may run on any other.
// Events are queued without a lock and applied by flush() under the hub's mutex, so a scrape never waits for more
// than one flush.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/correlate/correlator.h"
#include "core/correlate/desc_matcher.h"
#include "core/correlate/desc_ratio.h"
#include "core/correlate/overlap.h"
#include "core/model/events.h"
#include "core/proc/discovery.h"
#include "core/scrape/scraper.h"

namespace sp {

struct HubOptions {
  CorrelationOptions correlation;
  // A worker with no process left loses its series after this long (nullopt: never).
  std::optional<std::uint64_t> forget_after_ns = 3'600'000'000'000ULL;
};

struct HubSnapshot {
  std::map<WorkerLabels, WorkerCorrelation> correlation;
  // Client query time overlapped by a GC pause of the same process; every known worker from its discovery on.
  std::map<WorkerLabels, std::uint64_t> overlap_ns;
  std::map<std::pair<WorkerLabels, std::string>, double> desc_ratio;
  std::map<std::pair<WorkerLabels, std::string>, DescServerTotals> desc_server;
  // Statements PostgreSQL ran for each worker before the server-side probes were attached to the backend serving
  // them, counted from the client side (desc_matcher.h).
  std::map<WorkerLabels, std::uint64_t> missed_statements;
};

class CorrelationHub : public EventSink {
 public:
  explicit CorrelationHub(HubOptions options = {});

  void gc_pause(const GcPause& e) override;
  void query(const QueryEvent& q) override;
  void lock_wait(const LockWait& l) override;
  void io_request(const IoEvent& e) override;

  // After each discovery scan, at `now_ns` (and after the families' update(), whose last events of a removed process
  // are applied before the process's worker is let go). Returns the workers gone for longer than forget_after: their
  // series are dropped here, and the caller drops the families' ones.
  std::vector<WorkerLabels> update_workers(const ScanResult& current, const ScanDiff& diff, std::uint64_t now_ns);

  // Applies the queued events, decides what ended by `now_ns`, then adds the scrapes that finished since the last
  // call (one per worker name and scrape start). Returns the scrapes it took.
  std::vector<SynapseScrape> flush(std::uint64_t now_ns, const std::map<std::string, ScrapeResult>& scraped);

  HubSnapshot snapshot() const;

 private:
  // What flush() needs of each event, no more: the batches hold a pointer to the worker's labels, interned in
  // labels_ for the batch (a libpq record's fingerprint, verb and table stay out of them).
  struct BusyEvent {
    Cause cause;  // Gc or Disk
    const WorkerLabels* worker;
    std::uint64_t start_ns, end_ns;
  };
  struct ClientCall {
    const WorkerLabels* worker;
    std::uint32_t tid;
    bool in_query_time;  // not COMMIT/ROLLBACK
    std::uint64_t start_ns, end_ns;
    std::string desc;
    std::uint64_t conn;  // PGconn address
  };
  struct ServerStatement {
    const WorkerLabels* worker;
    std::uint32_t backend;
    std::uint64_t start_ns, end_ns;
  };
  struct BackendWait {
    const WorkerLabels* worker;
    std::uint32_t backend;
    std::uint64_t start_ns, end_ns;
  };
  void add_overlap(const WorkerLabels& worker, std::uint64_t ns);
  bool gone(const WorkerLabels& w) const;
  void apply_queued();  // hands the queued events to the views; under mutex_
  const WorkerLabels* intern(const WorkerLabels& w) { return &*labels_.insert(w).first; }

  const HubOptions options_;
  // Feeding thread only.
  OverlapTracker overlap_;
  std::map<int, WorkerLabels> worker_of_;  // host PID -> labels, as of the last scan
  std::set<WorkerLabels> labels_;  // of the events batched since the last flush
  std::vector<BusyEvent> busy_batch_;  // cleared, not freed, by each flush
  std::vector<ClientCall> client_batch_;
  std::vector<ServerStatement> server_batch_;
  std::vector<BackendWait> lock_batch_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_scrape_;
  std::map<WorkerLabels, std::uint64_t> gone_since_;  // workers with no process left -> when

  mutable std::mutex mutex_;  // guards everything below
  Correlator correlator_;
  DescLibpqRatio desc_ratio_;
  DescMatcher desc_matcher_;
  std::map<WorkerLabels, std::uint64_t> overlap_ns_;
};

}  // namespace sp
