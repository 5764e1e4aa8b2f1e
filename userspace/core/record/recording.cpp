#include "core/record/recording.h"

#include "core/record/trace_json.h"

namespace sp {

void Recording::start(std::uint64_t mono_ns, std::chrono::system_clock::time_point wall) {
  start_ns_ = mono_ns;
  wall_start_ = wall;
  aggregates_.start(mono_ns);
  if (trace_) trace_->begin(mono_ns, wall);
}

bool Recording::in_span(std::uint64_t start_ns, std::uint64_t end_ns) const {
  return end_ns >= start_ns_ && (end_ns_ == 0 || start_ns <= end_ns_);
}

bool Recording::admit() {
  if (events_ >= max_events_) {
    ++dropped_;
    return false;
  }
  ++events_;
  return true;
}

bool Recording::add_gc(const RecordedGc& e) {
  if (!in_span(e.start_ns, e.end_ns)) return false;
  aggregates_.gc(e);
  if (!admit()) return false;
  if (trace_) trace_->gc(e);
  return true;
}

bool Recording::add_query(const QueryEvent& e) {
  if (!in_span(e.start_ns, e.end_ns)) return false;
  aggregates_.query(e);
  if (!admit()) return false;
  if (trace_) trace_->query(e);
  return true;
}

bool Recording::add_lock_wait(const RecordedLockWait& e) {
  if (!in_span(e.start_ns, e.end_ns)) return false;
  aggregates_.lock_wait(e);
  if (!admit()) return false;
  if (trace_) trace_->lock_wait(e);
  return true;
}

bool Recording::add_io(const IoEvent& e) {
  if (!in_span(e.start_ns, e.complete_ns)) return false;
  aggregates_.io(e);
  if (!admit()) return false;
  if (trace_) trace_->io(e);
  return true;
}

void Recording::add_scrape(const RecordedScrape& s) {
  if (s.at_ns < start_ns_ || (end_ns_ != 0 && s.at_ns > end_ns_)) return;
  if (trace_) trace_->scrape(s);
}

}  // namespace sp
