#include "core/record/recording.h"

namespace sp {

void Recording::start(std::uint64_t mono_ns, std::chrono::system_clock::time_point wall) {
  start_ns_ = mono_ns;
  wall_start_ = wall;
}

bool Recording::in_span(std::uint64_t start_ns, std::uint64_t end_ns) const {
  return end_ns >= start_ns_ && (end_ns_ == 0 || start_ns <= end_ns_);
}

bool Recording::add_gc(const RecordedGc& e) { return admit(gcs_, e, e.start_ns, e.end_ns); }
bool Recording::add_query(const QueryEvent& e) { return admit(queries_, e, e.start_ns, e.end_ns); }
bool Recording::add_lock_wait(const RecordedLockWait& e) { return admit(locks_, e, e.start_ns, e.end_ns); }
bool Recording::add_io(const IoEvent& e) { return admit(ios_, e, e.start_ns, e.complete_ns); }

void Recording::add_scrape(const RecordedScrape& s) {
  if (scrapes_.size() < max_events_) scrapes_.push_back(s);
}

}  // namespace sp
