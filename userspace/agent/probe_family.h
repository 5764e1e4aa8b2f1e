// The contract every probe family keeps with the agent. A probe family is one kind of thing measured from the kernel
// (GC pauses, libpq calls, PostgreSQL's statements, block I/O, NVMe commands): its BPF object, behind a small
// kernel-side interface that tests replace with a fake, and the logic that turns what the kernel reports into
// per-worker totals and events.
//
// The agent (agent/profiling_loop.h) keeps an ordered list of families and only ever loops over it:
//   start()                 once; a family that cannot load says why and the others go on
//   update(scan, diff)      after every discovery scan, in list order (a family may read an earlier one's
//                           decisions: block I/O asks postgres which worker a backend serves)
//   drain()                 every 250 ms, and when one of ring_fds() fills up between two rounds: the ring buffers
//   poll()                  every second, in place of that round's drain(): the ring buffers and the kernel's maps
//   forget_worker(w)        a worker gone for --forget-after: its totals go
//   counts(), attach_status(), collect()   from the exporter's threads, at every scrape
// Events go to the EventSink set with set_sink() (core/model/events.h), on the scanning thread.
//
// Adding a family: its BPF C and shared header under bpf/, its kernel side under userspace/probes/, its logic here
// under agent/families/ with a unit test against a fake kernel, one registration line in cli/family_registry.cpp
// (docs/architecture.md has the checklist).
#pragma once

#include <prometheus/metric_family.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/correlate/hub.h"
#include "core/model/events.h"
#include "core/model/probe_status.h"
#include "core/proc/discovery.h"

namespace sp::agent {

// The family's own health, exported as synapse_profiler_events_lost_total{probe} and _hook_misses_total{probe}.
struct FamilyCounts {
  std::optional<std::uint64_t> events_lost;  // records its ring buffers could not take; nullopt: it has none
  std::uint64_t hook_misses = 0;             // hook runs the kernel skipped (recursion on a CPU)
};

class ProbeFamily {
 public:
  virtual ~ProbeFamily() = default;

  // The `probe` label of the family's self series ("gc", "libpq", "postgres", "block_io", "nvme").
  virtual const char* name() const = 0;
  // Loads the BPF side. False with `why_not` when it cannot; the agent reports it and goes on without the family.
  virtual bool start(std::string& why_not) = 0;
  virtual bool started() const = 0;
  // A family whose absence is normal on many hosts (NVMe without an nvme driver): not loading is logged as
  // information, not a warning, and does not count when the agent checks that anything loaded at all.
  virtual bool optional() const { return false; }
  // The ring buffers the agent waits on between two polls (core/util/ring_waker.h); empty before start().
  virtual std::vector<int> ring_fds() const { return {}; }

  virtual void update(const ScanResult& current, const ScanDiff& diff) = 0;
  virtual void drain() {}
  virtual void poll() = 0;
  virtual void forget_worker(const WorkerLabels&) {}

  virtual FamilyCounts counts() const = 0;
  // Per worker: attached or not, by which method, and why not (probe_attached, `workers`, the start-up log).
  virtual std::vector<ProbeStatus> attach_status() const { return {}; }
  // The series the family contributes. `hub`: the correlation views some families join with their own totals.
  virtual void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const = 0;

  void set_sink(EventSink* sink) { sink_ = sink ? sink : &no_sink_; }

 protected:
  EventSink& sink() const { return *sink_; }

 private:
  EventSink no_sink_;
  EventSink* sink_ = &no_sink_;
};

}  // namespace sp::agent
