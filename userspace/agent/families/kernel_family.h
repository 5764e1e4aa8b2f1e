// What every family with a kernel side shares: opening that side at start() (an opener, so that tests pass a fake),
// its ring buffers for the waker, and its health counters. A family derives from KernelFamily<ItsKernel> and keeps
// only its own logic.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/probe_family.h"

namespace sp::agent {

template <typename Kernel>
class KernelFamily : public ProbeFamily {
 public:
  using Opener = std::function<std::unique_ptr<Kernel>(std::string& error)>;
  explicit KernelFamily(Opener open) : open_(std::move(open)) {}

  bool start(std::string& why_not) override {
    kernel_ = open_(why_not);
    return kernel_ != nullptr;
  }
  bool started() const override { return kernel_ != nullptr; }

  // A kernel side with one ring (ring_fd()), several (ring_fds()) or none.
  std::vector<int> ring_fds() const override {
    if (!kernel_) return {};
    if constexpr (requires(const Kernel& k) { k.ring_fds(); }) {
      return kernel_->ring_fds();
    } else if constexpr (requires(const Kernel& k) { k.ring_fd(); }) {
      return {kernel_->ring_fd()};
    } else {
      return {};
    }
  }

  // events_lost only for a kernel side that has ring buffers to lose records from.
  FamilyCounts counts() const override {
    FamilyCounts c;
    if constexpr (requires(const Kernel& k) { k.events_lost(); }) c.events_lost = kernel_ ? kernel_->events_lost() : 0;
    c.hook_misses = kernel_ ? kernel_->hook_misses() : 0;
    return c;
  }

 protected:
  std::unique_ptr<Kernel> kernel_;

 private:
  Opener open_;
};

// Appends a snapshot's metric families (exporter/probe_metrics.h) to what collect() builds.
inline void append(std::vector<prometheus::MetricFamily>& out, std::vector<prometheus::MetricFamily> more) {
  for (auto& f : more) out.push_back(std::move(f));
}

}  // namespace sp::agent
