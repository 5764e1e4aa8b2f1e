// The block I/O family: the kernel counts per (process, disk, op); this class attributes each
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

#include "agent/families/backend_decisions.h"
#include "agent/families/blockio_kernel.h"
#include "agent/families/kernel_family.h"
#include "core/model/io_stats.h"
#include "core/proc/discovery.h"

namespace sp::agent {

class BlockIoFamily : public KernelFamily<BlockIoKernel> {
 public:
  // `device_globs`: shell patterns of device names to report ("vd*", "nvme*"); empty: every disk. `backends`: the
  // postgres family's decisions (null: no backend is ever charged to a worker).
  BlockIoFamily(std::string sys_root, std::vector<std::string> device_globs, BlockIoKernelOpener open,
                const BackendDecisions* backends);
  ~BlockIoFamily() override;

  const char* name() const override { return "block_io"; }
  bool start(std::string& why_not) override;
  const std::string& hooks() const;

  // See the order explained at its definition.
  void update(const ScanResult& current, const ScanDiff& diff) override;
  // The per-request records only (when the ring fills up between two polls). Each request charged to a worker is
  // handed to the sink; requests of nobody we profile, of devices not selected, and of backends whose worker is not
  // decided yet are not.
  void drain() override;
  // The records, then the per-process counts.
  void poll() override;
  void forget_worker(const WorkerLabels& w) override;
  void collect(const HubSnapshot& hub, std::vector<prometheus::MetricFamily>& out) const override;

  IoSnapshot snapshot() const;

 private:
  void drain(const std::map<int, WorkerLabels>& decisions);
  void poll(const std::map<int, WorkerLabels>& decisions);
  std::map<int, WorkerLabels> postgres_decisions() const;
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
  const BackendDecisions* backends_;
  // The postgres family's decisions as of the last drain, poll or rescan (scanning thread only): at a rescan, those
  // of backends that have exited since are gone from the postgres family already.
  std::map<int, WorkerLabels> last_decisions_;

  mutable std::mutex mutex_;
  std::map<int, WorkerLabels> workers_;  // host PID -> labels, from the last scan
  std::map<int, Owner> owners_;  // processes whose counts are kept live (workers and backends serving one)
  std::set<int> others_;         // processes the last scan found to be nobody we profile: folded into "other"
  std::map<std::uint32_t, std::string> device_names_;
  ProcessBook<IoKey, IoSeries> book_;
  std::map<IoKey, IoSeries> other_;
};

}  // namespace sp::agent
