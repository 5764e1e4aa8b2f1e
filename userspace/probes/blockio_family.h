// The block I/O family as the agent runs it: the kernel counts per (process, disk, op); this class attributes each
// process's counts to a worker (the worker itself: via="self"; a PostgreSQL backend serving it: via="postgres"),
// folds everything else into worker "other", names devices, and applies --devices.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "probes/blockio_probe.h"
#include "probes/pgserver_family.h"
#include "core/proc/discovery.h"
#include "core/model/io_stats.h"

namespace sp::bpf {

class BlockIoFamily {
 public:
  // `device_globs`: shell patterns of device names to report ("vd*", "nvme*"); empty: every disk.
  BlockIoFamily(std::string sys_root, std::vector<std::string> device_globs, const PgServerFamily* pgserver);
  ~BlockIoFamily();

  bool start(std::string& error);
  bool started() const { return probe_ != nullptr; }
  // The ring buffers the agent waits on (RingWaker); empty before start().
  std::vector<int> ring_fds() const { return probe_ ? std::vector<int>{probe_->ring_fd()} : std::vector<int>{}; }
  const std::string& hooks() const;

  void update(const ScanResult& current);
  // Drain the per-request records and refresh the per-process counts.
  void poll();
  // Only the records (when the ring fills up between two polls).
  void drain();
  IoSnapshot snapshot() const;
  // Drops the totals of worker `w`, gone for longer than --forget-after (ProcessBook::forget): memory stays bounded
  // by the workers of the recent past, not by every name the agent has ever seen.
  void forget_worker(const WorkerLabels& w);
  std::uint64_t hook_misses() const { return probe_ ? probe_->hook_misses() : 0; }
  // Called from poll() for each drained request charged to a worker (requests of nobody we profile, of devices not
  // selected, and of backends whose worker is not decided yet are not passed on).
  void set_event_sink(std::function<void(const IoEvent&)> sink) { on_event_ = std::move(sink); }

 private:
  void drain(const std::map<int, WorkerLabels>& decisions);
  struct Owner {
    WorkerLabels labels;
    std::string via;  // "self" or "postgres"
  };
  std::string device_name(std::uint32_t dev);  // caller holds mutex_
  bool wanted(const std::string& device) const;
  void fold_into_other(const sp_io_key& key);  // caller holds mutex_
  // Whose `pid`'s requests are: a worker's own, or a backend's serving one; nobody's (nullopt) otherwise. Caller
  // holds mutex_.
  std::optional<Owner> owner_of(int pid, const std::map<int, WorkerLabels>& decisions) const;

  std::string sys_root_;
  std::vector<std::string> device_globs_;
  const PgServerFamily* pgserver_;
  std::unique_ptr<BlockIoProbe> probe_;

  mutable std::mutex mutex_;
  std::map<int, WorkerLabels> workers_;  // host PID -> labels, from the last scan
  std::map<int, Owner> owners_;  // processes whose counts are kept live (workers and backends serving one)
  std::set<int> others_;         // processes the last scan found to be nobody we profile: folded into "other"
  std::map<std::uint32_t, std::string> device_names_;
  ProcessBook<IoKey, IoSeries> book_;
  std::map<IoKey, IoSeries> other_;
  std::function<void(const IoEvent&)> on_event_;
};

}  // namespace sp::bpf
