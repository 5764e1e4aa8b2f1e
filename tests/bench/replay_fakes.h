// Kernel sides for the replay benchmark (replay_bench.cpp): each hands out the records the benchmark queued, the way
// a ring buffer drain would, and attaches to anything. No BPF, no root.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "agent/families/gc_kernel.h"
#include "agent/families/libpq_kernel.h"
#include "agent/families/pgserver_kernel.h"

namespace sp::bench {

// The records queued since the last drain. clear() keeps the capacity: the next batch reuses it, as a ring would.
template <typename Record>
class Queue {
 public:
  Record& push() { return records_.emplace_back(); }
  int drain(const std::function<void(const Record&)>& fn) {
    for (const Record& r : records_) fn(r);
    const int n = static_cast<int>(records_.size());
    records_.clear();
    return n;
  }

 private:
  std::vector<Record> records_;
};

class FakeLibpqKernel : public agent::LibpqKernel {
 public:
  Queue<pq_event> events;
  bool attach(const agent::LibpqAttachSpec&, std::string&) override { return true; }
  void detach(int) override {}
  bool set_python(int, const pq_py_proc&, std::string& error) override {
    error = "replay: no Python to walk";
    return false;
  }
  int drain(const std::function<void(const pq_event&)>& fn) override { return events.drain(fn); }
  int ring_fd() const override { return -1; }
  std::vector<std::pair<std::uint32_t, pq_lost>> read_lost() const override { return {}; }
  void erase_lost(int) override {}
  std::uint64_t events_lost() const override { return 0; }
  std::uint64_t hook_misses() const override { return 0; }
};

class FakePgServerKernel : public agent::PgServerKernel {
 public:
  Queue<pgs_query_event> events;
  bool attach(int, const std::string&, std::string&) override { return true; }
  void detach(int) override {}
  bool attached(int) const override { return true; }
  std::size_t attached_count() const override { return 1; }
  int drain(const std::function<void(const pgs_query_event&)>& fn) override { return events.drain(fn); }
  int drain_locks(const std::function<void(const pgs_lock_event&)>&) override { return 0; }
  std::vector<int> ring_fds() const override { return {}; }
  std::vector<std::pair<std::uint32_t, pgs_backend_stats>> read_backends() const override { return {}; }
  void erase_backend(int) override {}
  std::uint64_t events_lost() const override { return 0; }
  std::uint64_t hook_misses() const override { return 0; }
};

class FakeGcKernel : public agent::GcKernel {
 public:
  Queue<gc_event> events;
  bool attach(const agent::GcAttachSpec&, std::string&) override { return true; }
  void detach(int) override {}
  std::vector<agent::GcHistEntry> read_hist() const override { return {}; }
  void erase_hist(int) override {}
  int drain(const std::function<void(const gc_event&)>& fn) override { return events.drain(fn); }
  int ring_fd() const override { return -1; }
  std::uint64_t events_lost() const override { return 0; }
  std::uint64_t hook_misses() const override { return 0; }
};

}  // namespace sp::bench
