#include "core/correlate/hub.h"

#include "core/util/clock.h"

namespace sp {

CorrelationHub::CorrelationHub(HubOptions options)
    : options_(options), correlator_(options.correlation),
      desc_ratio_(options.correlation.window_ns, options.correlation.history_ns) {}

void CorrelationHub::add_overlap(const WorkerLabels& worker, std::uint64_t ns) {
  if (ns == 0) return;
  std::lock_guard lock(mutex_);
  overlap_ns_[worker] += ns;
}

// Events of a worker with no process left (a backend still finishing a statement for it, a scrape result that was
// in flight) would bring it back into the views after update_workers() forgot it: they are dropped. The set is empty
// nearly always, so this costs one comparison per event.
bool CorrelationHub::gone(const WorkerLabels& w) const { return !gone_since_.empty() && gone_since_.count(w); }

void CorrelationHub::gc_pause(const GcPause& e) {
  if (gone(e.worker)) return;
  add_overlap(e.worker, overlap_.add_pause(e.tgid, e.start_ns, e.end_ns));
  busy_batch_.push_back({Cause::Gc, intern(e.worker), e.start_ns, e.end_ns});
}

void CorrelationHub::query(const QueryEvent& q) {
  if (gone(q.worker)) return;
  if (q.server_side) {
    if (q.worker == kOtherWorker) return;
    server_batch_.push_back({intern(q.worker), q.tgid, q.start_ns, q.end_ns});
    return;
  }
  add_overlap(q.worker, overlap_.add_query(q.tgid, q.start_ns, q.end_ns));
  // Synapse's synapse_storage_query_time times cursor.execute(), not the COMMIT/ROLLBACK psycopg2 sends itself.
  client_batch_.push_back(
      {intern(q.worker), q.tid, q.verb != "COMMIT" && q.verb != "ROLLBACK", q.start_ns, q.end_ns, q.desc, q.conn});
}

void CorrelationHub::lock_wait(const LockWait& l) {
  if (!gone(l.worker)) lock_batch_.push_back({intern(l.worker), l.backend, l.start_ns, l.end_ns});
}

void CorrelationHub::io_request(const IoEvent& e) {
  if (gone(e.worker)) return;
  busy_batch_.push_back({Cause::Disk, intern(e.worker), e.start_ns, e.complete_ns});
}

std::vector<WorkerLabels> CorrelationHub::update_workers(const ScanResult& current, const ScanDiff& diff,
                                                         std::uint64_t now_ns) {
  for (const auto& w : diff.removed) {
    worker_of_.erase(w.host_pid);
    overlap_.forget(static_cast<std::uint32_t>(w.host_pid));
  }
  for (const auto& w : current.workers) worker_of_[w.host_pid] = labels_of(w);
  // A worker whose every process has gone stops being correlated (a restart under the same name continues).
  std::set<WorkerLabels> present;
  for (const auto& [pid, labels] : worker_of_) present.insert(labels);
  std::lock_guard lock(mutex_);
  // The families drained a removed process's last events in their update(), just before this: apply them now, or
  // the next flush would bring a worker forgotten below back into the views (and nothing would forget it again).
  apply_queued();
  for (const auto& w : diff.removed) {
    const WorkerLabels labels = labels_of(w);
    if (present.count(labels)) continue;
    correlator_.forget(labels);
    desc_matcher_.forget(labels);
    desc_ratio_.forget(labels);
    last_scrape_.erase(w.worker_name);
    gone_since_.emplace(labels, now_ns);
  }
  for (const auto& labels : present) {
    correlator_.watch(labels, now_ns);
    gone_since_.erase(labels);
    overlap_ns_.try_emplace(labels, 0);  // a counter exists from discovery on, at 0
  }
  std::vector<WorkerLabels> expired;
  if (!options_.forget_after_ns) return expired;
  for (auto it = gone_since_.begin(); it != gone_since_.end();) {
    if (now_ns - it->second < *options_.forget_after_ns) {
      ++it;
      continue;
    }
    expired.push_back(it->first);
    desc_matcher_.forget_totals(it->first);
    overlap_ns_.erase(it->first);
    it = gone_since_.erase(it);
  }
  return expired;
}

void CorrelationHub::apply_queued() {
  for (const auto& e : busy_batch_) {
    if (e.cause == Cause::Gc) correlator_.add_gc(*e.worker, e.start_ns, e.end_ns);
    if (e.cause == Cause::Disk) correlator_.add_disk(*e.worker, e.start_ns, e.end_ns);
  }
  for (const auto& q : client_batch_) {
    correlator_.add_query(*q.worker, q.start_ns, q.end_ns, q.in_query_time);
    // Synapse's transaction time spans the whole new_transaction, COMMIT included.
    if (!q.desc.empty()) desc_ratio_.add_query(*q.worker, q.desc, q.end_ns, q.end_ns - q.start_ns);
    desc_matcher_.add_client(*q.worker, q.tid, q.start_ns, q.end_ns, q.desc, q.conn);
  }
  for (const auto& q : server_batch_) {
    correlator_.add_server(*q.worker, q.start_ns, q.end_ns);
    desc_matcher_.add_server(*q.worker, q.backend, q.start_ns, q.end_ns, false);
  }
  for (const auto& l : lock_batch_) desc_matcher_.add_server(*l.worker, l.backend, l.start_ns, l.end_ns, true);
  busy_batch_.clear();
  client_batch_.clear();
  server_batch_.clear();
  lock_batch_.clear();
  labels_.clear();  // nothing points into it any more
}

std::vector<SynapseScrape> CorrelationHub::flush(std::uint64_t now_ns,
                                                 const std::map<std::string, ScrapeResult>& scraped) {
  std::vector<SynapseScrape> taken;
  std::lock_guard lock(mutex_);
  apply_queued();
  desc_matcher_.settle(now_ns);
  correlator_.tick(now_ns);
  desc_ratio_.tick(now_ns);
  for (const auto& [worker, r] : scraped) {
    if (!r.up || !r.families) continue;
    auto& seen = last_scrape_[worker];
    if (r.started <= seen) continue;
    seen = r.started;
    const std::uint64_t at_ns = monotonic_ns(r.started);
    const WorkerLabels labels{worker, r.worker_app, r.pod};
    if (gone(labels)) continue;
    SynapseCounters counters = synapse_counters(*r.families);
    correlator_.add_scrape(labels, at_ns, counters);
    desc_ratio_.add_scrape(labels, at_ns, transaction_seconds_by_desc(*r.families));
    taken.push_back({labels, at_ns, std::move(counters)});
  }
  return taken;
}

HubSnapshot CorrelationHub::snapshot() const {
  HubSnapshot s;
  std::lock_guard lock(mutex_);
  s.correlation = correlator_.snapshot();
  s.overlap_ns = overlap_ns_;
  s.desc_ratio = desc_ratio_.snapshot();
  s.desc_server = desc_matcher_.totals();
  s.missed_statements = desc_matcher_.missed();
  return s;
}

}  // namespace sp
