// What the block I/O family hands the exporter: per (worker, device, op, via) queue and device time histograms and
// bytes; worker "other" (via "") for I/O no worker caused (writeback, the checkpointer, other programs).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model/latency_histogram.h"
#include "core/model/process_book.h"

namespace sp {

struct IoKey {
  std::string device;  // e.g. "vda", "nvme0n1"
  std::string op;      // read, write, write_sync, flush, discard, other
  std::string via;     // "self" (the worker), "postgres" (a backend serving it), "" (no worker)
  auto operator<=>(const IoKey&) const = default;
};

struct IoSeries {
  IoHistogram queue;
  IoHistogram device;
  std::uint64_t bytes = 0;
  void add(const IoSeries& o) {
    queue.add(o.queue);
    device.add(o.device);
    bytes += o.bytes;
  }
};

struct IoSnapshot {
  std::map<std::pair<WorkerLabels, IoKey>, IoSeries> series;
  std::string hooks;  // which tracepoints are in use
  std::uint64_t events_lost = 0;
};

// One block request charged to a worker (itself or a backend serving it), for correlation and recording. Times are
// CLOCK_MONOTONIC ns; `start_ns` is when the request was created (or issued, when its creation was not seen).
struct IoEvent {
  WorkerLabels worker;
  std::string via;     // self or postgres
  std::string device;
  std::string op;
  std::uint32_t bytes = 0;
  std::uint64_t start_ns = 0;
  std::uint64_t issue_ns = 0;
  std::uint64_t complete_ns = 0;
};

// Name of an I/O operation code of bpf/blockio.h.
std::string io_op_name(std::uint32_t op);

// The name of a block device from its number (major << 20 | minor, as the BPF side reports it): DEVNAME of
// SYS_ROOT/dev/block/MAJOR:MINOR/uevent, else "MAJOR:MINOR".
std::string block_device_name(const std::string& sys_root, std::uint32_t dev);

// --devices: whether `device` matches one of the shell patterns (every device when there are none).
bool device_selected(const std::vector<std::string>& globs, const std::string& device);

}  // namespace sp
