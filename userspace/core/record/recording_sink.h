// Feeds a Recording from the profiling loop's event stream (`record`): the events of the selected workers (every
// worker when none is named; never the catch-all "other"), with running counts for the progress line.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "core/model/events.h"
#include "core/record/recording.h"

namespace sp {

class RecordingSink : public EventSink {
 public:
  // `workers`: worker names to record; empty: every worker.
  RecordingSink(Recording& recording, std::set<std::string> workers)
      : recording_(recording), workers_(std::move(workers)) {}

  void gc_pause(const GcPause& e) override;
  void query(const QueryEvent& q) override;
  void lock_wait(const LockWait& l) override;
  void io_request(const IoEvent& e) override;
  void synapse_scrape(const SynapseScrape& s) override;

  // Recorded so far (read from another thread for the progress line).
  struct Counts {
    std::size_t gc = 0, queries = 0, server = 0, io = 0;
    std::uint64_t dropped = 0;
  };
  Counts counts() const { return {gc_.load(), queries_.load(), server_.load(), io_.load(), dropped_.load()}; }

 private:
  bool wanted(const WorkerLabels& w) const;
  void count(bool recorded, std::atomic<std::size_t>& counter);

  Recording& recording_;
  const std::set<std::string> workers_;
  std::atomic<std::size_t> gc_{0}, queries_{0}, server_{0}, io_{0};
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace sp
