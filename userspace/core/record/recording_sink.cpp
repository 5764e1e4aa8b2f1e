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
  count(recording_.add_gc(e), gc_);
}

void RecordingSink::query(const QueryEvent& q) {
  if (!wanted(q.worker)) return;
  count(recording_.add_query(q), q.server_side ? server_ : queries_);
}

void RecordingSink::lock_wait(const LockWait& l) {
  if (!wanted(l.worker)) return;
  count(recording_.add_lock_wait(l), server_);
}

void RecordingSink::io_request(const IoEvent& e) {
  if (!wanted(e.worker)) return;
  count(recording_.add_io(e), io_);
}

void RecordingSink::synapse_scrape(const SynapseScrape& s) {
  if (!wanted(s.worker)) return;
  recording_.add_scrape(s);
}

}  // namespace sp
