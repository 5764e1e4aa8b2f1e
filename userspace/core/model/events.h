// The per-event stream every probe family produces, as plain structs (no libbpf, no kernel types): what the
// correlation hub (core/correlate/hub.h) and a recording consume, and what tests generate to drive them without a
// kernel. A family resolves the process it saw to its worker's labels before it hands an event on.
//
// Adding an event kind: one struct here and one method of EventSink with an empty default, so that existing sinks
// keep compiling and ignore it.
#pragma once

#include <cstdint>
#include <vector>

#include "core/correlate/correlator.h"  // SynapseCounters
#include "core/model/db_stats.h"  // QueryEvent
#include "core/model/io_stats.h"  // IoEvent
#include "core/model/process_book.h"  // WorkerLabels

namespace sp {

// One GC pause of a worker's process (CLOCK_MONOTONIC ns).
struct GcPause {
  WorkerLabels worker;
  std::uint32_t tgid = 0;
  std::uint32_t tid = 0;
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  int generation = -1;          // -1: unknown
  std::int64_t collected = -1;  // -1: unknown
};

// One lock wait of a PostgreSQL backend serving a worker (CLOCK_MONOTONIC ns).
struct LockWait {
  WorkerLabels worker;  // the worker the backend serves
  std::uint32_t backend = 0;
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
};

// The few counters of one scrape of a worker's own metrics that the hub took (what a recording keeps of it).
struct SynapseScrape {
  WorkerLabels worker;
  std::uint64_t at_ns = 0;  // CLOCK_MONOTONIC, when the scrape started
  SynapseCounters counters;
};

// Where families hand their events. Called on the agent's scanning thread only, from a family's drain()/poll()/
// update(): a sink may keep state without locking against the families, but must not block.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void gc_pause(const GcPause&) {}
  // Client side (libpq, q.server_side false): every call of a worker. Server side: statements of backends serving a
  // worker (never those serving nobody we profile).
  virtual void query(const QueryEvent&) {}
  virtual void lock_wait(const LockWait&) {}
  // A block request charged to a worker (itself or a backend serving it), of a selected device.
  virtual void io_request(const IoEvent&) {}
  // A scrape the hub took (the loop hands it on after the hub's flush).
  virtual void synapse_scrape(const SynapseScrape&) {}
};

// Hands every event to each of its sinks in order (the hub, and a recording during `record`).
class EventFanout : public EventSink {
 public:
  void add(EventSink* sink) { sinks_.push_back(sink); }
  void gc_pause(const GcPause& e) override {
    for (auto* s : sinks_) s->gc_pause(e);
  }
  void query(const QueryEvent& e) override {
    for (auto* s : sinks_) s->query(e);
  }
  void lock_wait(const LockWait& e) override {
    for (auto* s : sinks_) s->lock_wait(e);
  }
  void io_request(const IoEvent& e) override {
    for (auto* s : sinks_) s->io_request(e);
  }
  void synapse_scrape(const SynapseScrape& e) override {
    for (auto* s : sinks_) s->synapse_scrape(e);
  }

 private:
  std::vector<EventSink*> sinks_;
};

}  // namespace sp
