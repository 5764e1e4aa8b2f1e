#include "core/record/recording_sink.h"

namespace sp {

bool RecordingSink::wanted(const WorkerLabels& w) const {
  return w.worker != kOtherWorker.worker && (workers_.empty() || workers_.count(w.worker));
}

void RecordingSink::count(bool recorded, std::atomic<std::size_t>& counter) {
  if (recorded) ++counter;
  dropped_ = recording_.dropped();
}

void RecordingSink::gc_pause(const GcPause& e) {
  if (!wanted(e.worker)) return;
  RecordedGc g;
  g.worker = e.worker;
  g.tgid = e.tgid;
  g.tid = e.tid;
  g.start_ns = e.start_ns;
  g.end_ns = e.end_ns;
  g.generation = e.generation;
  g.collected = e.collected;
  count(recording_.add_gc(g), gc_);
}

void RecordingSink::query(const QueryEvent& q) {
  if (!wanted(q.worker)) return;
  count(recording_.add_query(q), q.server_side ? server_ : queries_);
}

void RecordingSink::lock_wait(const LockWait& l) {
  if (!wanted(l.worker)) return;
  RecordedLockWait r;
  r.worker = l.worker;
  r.backend = l.backend;
  r.start_ns = l.start_ns;
  r.end_ns = l.end_ns;
  count(recording_.add_lock_wait(r), server_);
}

void RecordingSink::io_request(const IoEvent& e) {
  if (!wanted(e.worker)) return;
  count(recording_.add_io(e), io_);
}

void RecordingSink::synapse_scrape(const SynapseScrape& s) {
  if (!wanted(s.worker)) return;
  recording_.add_scrape({s.worker, s.at_ns, s.counters});
}

}  // namespace sp
