#include "agent/families/blockio_family.h"

#include "core/util/log.h"
#include "exporter/probe_metrics.h"

namespace sp::agent {
namespace {

IoSeries series_of(const sp_io_hist& h) {
  IoSeries s;
  s.queue = IoHistogram::from_kernel(h.queue, h.queue_count, h.queue_sum_ns);
  s.device = IoHistogram::from_kernel(h.device, h.device_count, h.device_sum_ns);
  s.bytes = h.bytes;
  return s;
}

}  // namespace

BlockIoFamily::BlockIoFamily(std::string sys_root, std::vector<std::string> device_globs, BlockIoKernelOpener open,
                             const BackendDecisions* backends)
    : sys_root_(std::move(sys_root)), device_globs_(std::move(device_globs)), open_(std::move(open)),
      backends_(backends) {}

BlockIoFamily::~BlockIoFamily() = default;

bool BlockIoFamily::start(std::string& why_not) {
  kernel_ = open_(why_not);
  if (kernel_) log::info("block I/O: attached ({})", kernel_->hooks());
  return kernel_ != nullptr;
}

std::vector<int> BlockIoFamily::ring_fds() const {
  return kernel_ ? std::vector<int>{kernel_->ring_fd()} : std::vector<int>{};
}

const std::string& BlockIoFamily::hooks() const {
  static const std::string none;
  return kernel_ ? kernel_->hooks() : none;
}

std::string BlockIoFamily::device_name(std::uint32_t dev) {
  if (auto it = device_names_.find(dev); it != device_names_.end()) return it->second;
  return device_names_[dev] = block_device_name(sys_root_, dev);
}

bool BlockIoFamily::wanted(const std::string& device) const { return device_selected(device_globs_, device); }

// Order matters, so that no completed request is lost or charged to the wrong owner:
// 1. workers found by this scan are known before draining: what they did before the scan found them is theirs;
// 2. a process that has gone has its kernel entries taken (read and deleted in one step, so a request completing
//    in between cannot slip through) as its final values, then retired into its worker's totals;
// 3. only now, with the worker set final, is every process still unknown folded into "other" (and remembered, so
//    that polls until the next scan fold its new requests right away).
void BlockIoFamily::update(const ScanResult& current, const ScanDiff&) {
  if (!kernel_) return;
  {
    std::lock_guard lock(mutex_);
    for (const auto& w : current.workers) workers_[w.host_pid] = labels_of(w);
  }
  poll();
  std::lock_guard lock(mutex_);
  workers_.clear();
  for (const auto& w : current.workers) workers_[w.host_pid] = labels_of(w);
  auto decisions = backends_ ? backends_->backend_decisions() : std::map<int, WorkerLabels>{};
  auto undecided = backends_ ? backends_->undecided_backends() : std::set<int>{};
  std::set<int> gone;
  for (const auto& [pid, owner] : owners_) {
    if (!owner_of(pid, decisions)) gone.insert(pid);
  }
  others_.clear();
  for (const auto& [key, value] : kernel_->read()) {
    const int pid = static_cast<int>(key.tgid);
    if (gone.count(pid)) {
      sp_io_hist final_value{};
      const Owner& owner = owners_[pid];
      if (kernel_->take(key, final_value)) {
        book_.set_live(pid, owner.labels, {device_name(key.dev), io_op_name(key.op), owner.via},
                       series_of(final_value));
      }
    } else if (!owner_of(pid, decisions) && !undecided.count(pid)) {
      others_.insert(pid);
      fold_into_other(key);
    }
  }
  for (int pid : gone) {
    book_.retire(pid);
    owners_.erase(pid);
  }
}

std::optional<BlockIoFamily::Owner> BlockIoFamily::owner_of(int pid,
                                                            const std::map<int, WorkerLabels>& decisions) const {
  if (auto w = workers_.find(pid); w != workers_.end()) return Owner{w->second, "self"};
  if (auto d = decisions.find(pid); d != decisions.end() && !(d->second == kOtherWorker)) {
    return Owner{d->second, "postgres"};
  }
  return std::nullopt;
}

void BlockIoFamily::fold_into_other(const sp_io_key& key) {
  sp_io_hist taken{};
  if (kernel_->take(key, taken)) other_[{device_name(key.dev), io_op_name(key.op), ""}].add(series_of(taken));
}

void BlockIoFamily::drain() {
  if (!kernel_) return;
  auto decisions = backends_ ? backends_->backend_decisions() : std::map<int, WorkerLabels>{};
  drain(decisions);
}

void BlockIoFamily::drain(const std::map<int, WorkerLabels>& decisions) {
  std::vector<sp_io_event> requests;
  kernel_->drain([&](const sp_io_event& e) { requests.push_back(e); });
  std::vector<IoEvent> charged;
  std::unique_lock lock(mutex_);
  for (const auto& e : requests) {
    int pid = static_cast<int>(e.tgid);
    auto owner = owner_of(pid, decisions);
    if (!owner) continue;
    IoEvent out;
    out.worker = owner->labels;
    out.via = owner->via;
    out.device = device_name(e.dev);
    if (!wanted(out.device)) continue;
    out.op = io_op_name(e.op);
    out.bytes = e.bytes;
    out.start_ns = e.start_ns;
    out.issue_ns = e.issue_ns;
    out.complete_ns = e.complete_ns;
    charged.push_back(std::move(out));
  }
  lock.unlock();
  for (const auto& e : charged) sink().io_request(e);
}

void BlockIoFamily::poll() {
  if (!kernel_) return;
  auto decisions = backends_ ? backends_->backend_decisions() : std::map<int, WorkerLabels>{};
  drain(decisions);
  std::lock_guard lock(mutex_);
  for (const auto& [key, value] : kernel_->read()) {
    const int pid = static_cast<int>(key.tgid);
    auto owner = owner_of(pid, decisions);
    if (!owner) {
      // Nobody we profile, as of the last scan: fold into "other" and free the kernel entry (writeback threads,
      // other programs). A process the last scan did not see yet (maybe a worker that has just started, maybe a
      // backend whose worker is not decided yet) keeps its counts in the kernel until the next scan decides.
      if (others_.count(pid)) fold_into_other(key);
      continue;
    }
    book_.set_live(pid, owner->labels, {device_name(key.dev), io_op_name(key.op), owner->via}, series_of(value));
    owners_[pid] = *owner;
  }
}

void BlockIoFamily::forget_worker(const WorkerLabels& w) {
  std::lock_guard lock(mutex_);
  book_.forget(w);
}

IoSnapshot BlockIoFamily::snapshot() const {
  IoSnapshot snap;
  std::lock_guard lock(mutex_);
  for (auto& [key, s] : book_.totals()) {
    if (wanted(key.second.device)) snap.series[key].add(s);
  }
  for (const auto& [key, s] : other_) {
    if (wanted(key.device)) snap.series[{kOtherWorker, key}].add(s);
  }
  snap.hooks = kernel_ ? kernel_->hooks() : "";
  snap.events_lost = kernel_ ? kernel_->events_lost() : 0;
  return snap;
}

FamilyCounts BlockIoFamily::counts() const {
  FamilyCounts c;
  c.events_lost = kernel_ ? kernel_->events_lost() : 0;
  c.hook_misses = kernel_ ? kernel_->hook_misses() : 0;
  return c;
}

void BlockIoFamily::collect(const HubSnapshot&, std::vector<prometheus::MetricFamily>& out) const {
  for (auto& f : exporter::disk_io_metrics(snapshot())) out.push_back(std::move(f));
}

}  // namespace sp::agent
