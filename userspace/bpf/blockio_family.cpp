#include "bpf/blockio_family.h"

#include "core/log.h"

namespace sp::bpf {
namespace {

IoSeries series_of(const sp_io_hist& h) {
  IoSeries s;
  s.queue = IoHistogram::from_kernel(h.queue, h.queue_count, h.queue_sum_ns);
  s.device = IoHistogram::from_kernel(h.device, h.device_count, h.device_sum_ns);
  s.bytes = h.bytes;
  return s;
}

}  // namespace

BlockIoFamily::BlockIoFamily(std::string sys_root, std::vector<std::string> device_globs,
                             const PgServerFamily* pgserver)
    : sys_root_(std::move(sys_root)), device_globs_(std::move(device_globs)), pgserver_(pgserver) {}

BlockIoFamily::~BlockIoFamily() = default;

bool BlockIoFamily::start(std::string& error) {
  probe_ = BlockIoProbe::create(error);
  if (probe_) log::info("block I/O: attached ({})", probe_->hooks());
  return probe_ != nullptr;
}

const std::string& BlockIoFamily::hooks() const {
  static const std::string none;
  return probe_ ? probe_->hooks() : none;
}

std::string BlockIoFamily::device_name(std::uint32_t dev) {
  if (auto it = device_names_.find(dev); it != device_names_.end()) return it->second;
  return device_names_[dev] = block_device_name(sys_root_, dev);
}

bool BlockIoFamily::wanted(const std::string& device) const { return device_selected(device_globs_, device); }

void BlockIoFamily::update(const ScanResult& current) {
  if (!probe_) return;
  poll();
  std::lock_guard lock(mutex_);
  workers_.clear();
  for (const auto& w : current.workers) workers_[w.host_pid] = labels_of(w);
  // A tracked process that is neither a worker nor a backend serving one any more has exited: keep its totals.
  auto decisions = pgserver_ ? pgserver_->backend_decisions() : std::map<int, WorkerLabels>{};
  std::set<int> gone;
  for (int pid : tracked_) {
    auto d = decisions.find(pid);
    if (!workers_.count(pid) && (d == decisions.end() || d->second == kOtherWorker)) gone.insert(pid);
  }
  if (gone.empty()) return;
  for (const auto& [key, value] : probe_->read()) {
    if (gone.count(static_cast<int>(key.tgid))) probe_->erase(key);
  }
  for (int pid : gone) {
    book_.retire(pid);
    tracked_.erase(pid);
  }
}

void BlockIoFamily::poll() {
  if (!probe_) return;
  auto decisions = pgserver_ ? pgserver_->backend_decisions() : std::map<int, WorkerLabels>{};
  auto undecided = pgserver_ ? pgserver_->undecided_backends() : std::set<int>{};
  std::vector<sp_io_event> requests;
  probe_->drain([&](const sp_io_event& e) {
    if (on_event_) requests.push_back(e);
  });
  std::vector<IoEvent> charged;
  std::unique_lock lock(mutex_);
  for (const auto& e : requests) {
    int pid = static_cast<int>(e.tgid);
    IoEvent out;
    if (auto w = workers_.find(pid); w != workers_.end()) {
      out.worker = w->second;
      out.via = "self";
    } else if (auto d = decisions.find(pid); d != decisions.end() && !(d->second == kOtherWorker)) {
      out.worker = d->second;
      out.via = "postgres";
    } else {
      continue;
    }
    out.device = device_name(e.dev);
    if (!wanted(out.device)) continue;
    out.op = io_op_name(e.op);
    out.bytes = e.bytes;
    out.start_ns = e.start_ns;
    out.issue_ns = e.issue_ns;
    out.complete_ns = e.complete_ns;
    charged.push_back(std::move(out));
  }
  for (const auto& [key, value] : probe_->read()) {
    int pid = static_cast<int>(key.tgid);
    std::string device = device_name(key.dev);
    std::string op = io_op_name(key.op);
    if (auto w = workers_.find(pid); w != workers_.end()) {
      book_.set_live(pid, w->second, {device, op, "self"}, series_of(value));
      tracked_.insert(pid);
    } else if (auto d = decisions.find(pid); d != decisions.end() && !(d->second == kOtherWorker)) {
      book_.set_live(pid, d->second, {device, op, "postgres"}, series_of(value));
      tracked_.insert(pid);
    } else if (undecided.count(pid)) {
      continue;  // a backend whose worker is not known yet: its counts wait in the kernel
    } else {
      // Nobody we profile: fold into "other" and free the kernel entry (writeback threads, other programs).
      sp_io_hist taken{};
      if (probe_->take(key, taken)) other_[{device, op, ""}].add(series_of(taken));
    }
  }
  lock.unlock();
  for (const auto& e : charged) on_event_(e);
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
  snap.hooks = probe_ ? probe_->hooks() : "";
  snap.events_lost = probe_ ? probe_->events_lost() : 0;
  return snap;
}

}  // namespace sp::bpf
