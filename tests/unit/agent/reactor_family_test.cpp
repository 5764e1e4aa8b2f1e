// ReactorFamily against a fake kernel side: which processes it asks the kernel to count, per-worker totals across
// process exits and restarts, forgetting a long-gone worker, the attach status of a worker that never waits in epoll,
// and its exposition.
#include "agent/families/reactor_family.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "family_test_util.h"

namespace {

using sp::agent::ReactorFamily;
using sp::test::worker_labels;
using sp::test::worker_sample;
using testing::ElementsAre;
using testing::HasSubstr;
using testing::IsEmpty;

// bpf/reactor.bpf.c without the kernel: the processes userspace registered, each with the counts its main thread's
// epoll calls made.
class FakeReactorKernel : public sp::agent::ReactorKernel, public sp::test::FakeKernelSide<int, reactor_proc> {
 public:
  std::uint64_t misses = 0;

  // One tick of `tick_ns` after a wait of `wait_ns` in process `pid` (ignored when the process is not registered,
  // as the kernel ignores it).
  void tick(int pid, std::uint64_t wait_ns, std::uint64_t tick_ns) {
    auto it = procs_.find(pid);
    if (it == procs_.end()) return;
    reactor_proc& p = it->second;
    p.waits += 1;
    p.wait_sum_ns += wait_ns;
    p.buckets[sp::TickHistogram::bucket_of(tick_ns)] += 1;
    p.ticks += 1;
    p.tick_sum_ns += tick_ns;
    p.return_ns = 1;
  }

  const std::string& method() const override { return method_; }
  bool add(int host_pid, std::string& error) override {
    note("add", host_pid);
    if (auto it = refusals.find(host_pid); it != refusals.end()) {
      error = it->second;
      return false;
    }
    procs_[host_pid] = reactor_proc{};
    return true;
  }
  void remove(int host_pid) override {
    note("remove", host_pid);
    procs_.erase(host_pid);
  }
  std::vector<std::pair<int, reactor_proc>> read() const override { return {procs_.begin(), procs_.end()}; }
  std::uint64_t hook_misses() const override { return misses; }

 private:
  std::string method_ = "syscalls";
  std::map<int, reactor_proc> procs_;
};

class ReactorFamilyTest : public testing::Test {
 protected:
  ReactorFamilyTest() {
    std::string why;
    EXPECT_TRUE(family_.start(why)) << why;
  }

  void run(int pid, const std::string& name) { discovery_.start(sp::test::make_worker(pid, name)); }

  sp::ReactorSeries series(const std::string& worker) const {
    const auto snap = family_.snapshot();
    const auto it = snap.series.find(worker_labels(worker));
    return it == snap.series.end() ? sp::ReactorSeries{} : it->second;
  }

  std::chrono::steady_clock::time_point now_{};
  FakeReactorKernel* kernel_ = nullptr;  // owned by family_
  ReactorFamily family_{"/nonexistent-proc", sp::test::fake_opener<sp::agent::ReactorKernel>(kernel_),
                        [this] { return now_; }};
  sp::test::FakeDiscovery discovery_{family_};
};

TEST_F(ReactorFamilyTest, CountsEachWorkerFromItsDiscoveryOn) {
  run(101, "synchrotron1");
  run(102, "federation_sender1");
  discovery_.rescan();
  EXPECT_THAT(kernel_->calls, ElementsAre("add 101", "add 102"));

  kernel_->tick(101, 40'000'000, 500'000);
  kernel_->tick(101, 10'000'000, 3'000'000);
  kernel_->tick(102, 1'000'000, 700'000'000);
  family_.poll();

  const auto s1 = series("synchrotron1");
  EXPECT_EQ(s1.ticks.count, 2u);
  EXPECT_EQ(s1.ticks.sum_ns, 3'500'000u);
  EXPECT_EQ(s1.ticks.buckets[0], 1u);  // <= 1 ms
  EXPECT_EQ(s1.ticks.buckets[2], 1u);  // <= 5 ms
  EXPECT_EQ(s1.wait_sum_ns, 50'000'000u);
  EXPECT_EQ(series("federation_sender1").ticks.buckets[9], 1u);  // <= 1 s

  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].labels, worker_labels("synchrotron1"));
  EXPECT_EQ(status[0].probe, "reactor");
  EXPECT_EQ(status[0].method, "syscalls");
  EXPECT_TRUE(status[0].attached);
  EXPECT_THAT(status[0].error, IsEmpty());
}

TEST_F(ReactorFamilyTest, ARestartKeepsTheWorkersTotals) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->tick(101, 5'000'000, 2'000'000);
  family_.poll();
  kernel_->tick(101, 5'000'000, 2'000'000);  // after the last poll: still counted when the process goes

  discovery_.stop(101);
  run(201, "synchrotron1");  // the same worker restarted under a new PID
  discovery_.rescan();
  EXPECT_THAT(kernel_->calls, ElementsAre("add 101", "remove 101", "add 201"));
  kernel_->tick(201, 1'000'000, 4'000'000);
  family_.poll();

  const auto s = series("synchrotron1");
  EXPECT_EQ(s.ticks.count, 3u);
  EXPECT_EQ(s.ticks.sum_ns, 8'000'000u);
  EXPECT_EQ(s.wait_sum_ns, 11'000'000u);
  ASSERT_EQ(family_.attach_status().size(), 1u);
  EXPECT_EQ(family_.attach_status()[0].host_pid, 201);
}

TEST_F(ReactorFamilyTest, ForgettingAGoneWorkerDropsOnlyItsRetiredTotals) {
  run(101, "synchrotron1");
  run(102, "synchrotron2");
  discovery_.rescan();
  kernel_->tick(101, 1'000'000, 1'000'000);
  kernel_->tick(102, 1'000'000, 1'000'000);
  discovery_.stop(101);
  discovery_.rescan();
  family_.forget_worker(worker_labels("synchrotron1"));
  family_.forget_worker(worker_labels("synchrotron2"));  // still running: keeps what it reported
  family_.poll();

  const auto snap = family_.snapshot();
  EXPECT_EQ(snap.series.count(worker_labels("synchrotron1")), 0u);
  EXPECT_EQ(series("synchrotron2").ticks.count, 1u);
}

TEST_F(ReactorFamilyTest, ARefusalIsReportedAndNothingIsCounted) {
  kernel_->refusals[101] = "register process 101 for reactor ticks: Argument list too long";
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->tick(101, 1'000'000, 1'000'000);
  family_.poll();

  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_FALSE(status[0].attached);
  EXPECT_EQ(status[0].error, kernel_->refusals[101]);
  EXPECT_EQ(family_.snapshot().series.size(), 0u);
}

TEST_F(ReactorFamilyTest, AWorkerThatNeverWaitsInEpollIsToldApartAfterAWhile) {
  run(101, "no_reactor");
  run(102, "synchrotron1");
  discovery_.rescan();
  kernel_->tick(102, 1'000'000, 1'000'000);
  now_ += ReactorFamily::kNoEpollAfter - std::chrono::seconds(1);
  family_.poll();
  for (const auto& st : family_.attach_status()) EXPECT_THAT(st.error, IsEmpty()) << st.host_pid;

  now_ += std::chrono::seconds(1);
  family_.poll();
  auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_TRUE(status[0].attached);  // counting: it may still start a reactor
  EXPECT_THAT(status[0].error, HasSubstr("no epoll call on the main thread in 30 s"));
  EXPECT_THAT(status[1].error, IsEmpty());

  kernel_->tick(101, 1'000'000, 1'000'000);  // it did, late
  family_.poll();
  EXPECT_THAT(family_.attach_status()[0].error, IsEmpty());
}

TEST_F(ReactorFamilyTest, ExportsTicksInSynapsesBucketsAndTheWaitCounter) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->tick(101, 250'000'000, 1'000'000);
  kernel_->tick(101, 250'000'000, 6'000'000'000);
  family_.poll();
  const std::string text = sp::test::exposition(family_);
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_tick_seconds_bucket", "synchrotron1", ",le=\"0.001\""), "1");
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_tick_seconds_bucket", "synchrotron1", ",le=\"5\""), "1");
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_tick_seconds_bucket", "synchrotron1", ",le=\"+Inf\""), "2");
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_tick_seconds_count", "synchrotron1"), "2");
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_tick_seconds_sum", "synchrotron1"), "6.001");
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_poll_wait_seconds_total", "synchrotron1"), "0.5");
  EXPECT_EQ(family_.counts().hook_misses, 0u);
  EXPECT_FALSE(family_.counts().events_lost.has_value());  // no ring buffer to lose records from
}

}  // namespace
