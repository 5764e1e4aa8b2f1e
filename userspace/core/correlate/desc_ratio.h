// Per worker and Synapse transaction name (`desc`): the share of Synapse's own transaction time that the probes saw
// spent inside libpq. Synapse exports synapse_storage_transaction_time_sum_total{desc} (seconds inside
// new_transaction, measured in Python); the libpq probe attributes each query's round trip to the desc of the
// new_transaction frame it was sent from. Both are cumulative; the ratio is the increase of the probes' seconds over
// the increase of Synapse's, between the oldest scrape still inside the window and the newest.
//
// Clocks as in correlator.h: events carry CLOCK_MONOTONIC end times and reach us after the scrape that should count
// them may have started, so the probe total "as of a scrape" is the running total minus what ended after it (events
// are kept for `history_ns`). A transaction running across a scrape puts some of its queries before it and its own
// observation after: the ratio of a single interval can be off by one transaction, which a window evens out.
//
// Not thread-safe: fed by the agent's scanning thread, read under the caller's lock.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/model/process_book.h"  // WorkerLabels
#include "core/scrape/prom_text.h"

namespace sp {

// synapse_storage_transaction_time_sum_total per desc (all other labels summed), seconds. Empty when absent.
std::map<std::string, double> transaction_seconds_by_desc(const std::vector<prom::Family>& families);

class DescLibpqRatio {
 public:
  explicit DescLibpqRatio(std::uint64_t window_ns = 60'000'000'000ULL, std::uint64_t history_ns = 10'000'000'000ULL,
                          std::size_t max_recent = 1u << 20)
      : window_ns_(window_ns), history_ns_(history_ns), max_recent_(max_recent) {}

  // One attributed libpq call (unattributed ones have no Synapse counterpart and are not passed).
  void add_query(const WorkerLabels& w, const std::string& desc, std::uint64_t end_ns, std::uint64_t duration_ns);
  // Every event that ended by now_ns has been added.
  void tick(std::uint64_t now_ns);
  // A successful scrape of the worker, started at at_ns (CLOCK_MONOTONIC).
  void add_scrape(const WorkerLabels& w, std::uint64_t at_ns, std::map<std::string, double> synapse_seconds);
  void forget(const WorkerLabels& w) { workers_.erase(w); }

  // (worker, desc) -> ratio, for every desc whose Synapse time grew inside the window.
  std::map<std::pair<WorkerLabels, std::string>, double> snapshot() const;

 private:
  struct Recent {
    std::uint64_t end_ns;
    const std::string* desc;  // the key of its entry in Worker::running, which lives as long as the worker
    std::uint64_t ns;
  };
  struct Point {
    std::uint64_t at_ns = 0;
    std::map<std::string, double> synapse;  // seconds
    std::map<std::string, std::uint64_t> probes;  // ns, as of at_ns
  };
  struct Worker {
    std::map<std::string, std::uint64_t, std::less<>> running;
    std::deque<Recent> recent;
    std::deque<Point> pending;  // scrapes no tick has passed yet
    std::deque<Point> points;   // settled, newest last
  };
  void settle(Worker& w, Point p);

  std::uint64_t window_ns_, history_ns_;
  std::size_t max_recent_;
  std::uint64_t now_ns_ = 0;
  std::map<WorkerLabels, Worker> workers_;
};

}  // namespace sp
