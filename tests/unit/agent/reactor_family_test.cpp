// ReactorFamily against a fake kernel side: which processes it asks the kernel to count, per-worker totals across
// process exits and restarts, forgetting a long-gone worker, the attach status of a worker that never waits in epoll,
// thread states (the state in progress, roles, exited threads, the reactor's busy split), and its exposition.
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

  // Thread states, as bpf/reactor.bpf.c keeps them: a thread appears at its first event, in `state` from `now`.
  void thread(std::uint32_t tid, int pid, std::uint32_t state) {
    if (!procs_.count(pid)) return;
    reactor_thread t{};
    t.since_ns = t.first_ns = clock;
    t.tgid = static_cast<std::uint32_t>(pid);
    t.state = state;
    t.flags = tid == static_cast<std::uint32_t>(pid) ? SP_THREAD_MAIN : 0;
    threads_[tid] = t;
  }
  // The state in progress closes at `clock`; the next begins.
  void set_state(std::uint32_t tid, std::uint32_t next) {
    auto it = threads_.find(tid);
    if (it == threads_.end()) return;
    reactor_thread& t = it->second;
    if (t.state < SP_STATES) {
      t.ns[t.state] += clock - t.since_ns;
      if (t.flags & SP_THREAD_IN_TICK) t.cur_tick_ns[t.state] += clock - t.since_ns;
    }
    t.since_ns = clock;
    t.state = next;
  }
  // The main thread returns from epoll (a tick begins) or calls it (the tick ends): it is running.
  void tick_boundary(std::uint32_t tid, bool begins) {
    set_state(tid, SP_ST_ON_CPU);
    auto& t = threads_.at(tid);
    if (!begins) {
      for (std::size_t i = 0; i < SP_STATES; ++i) t.tick_ns[i] += t.cur_tick_ns[i];
    }
    for (auto& v : t.cur_tick_ns) v = 0;
    t.flags = begins ? (t.flags | SP_THREAD_IN_TICK) : (t.flags & ~SP_THREAD_IN_TICK);
  }
  void exit_thread(std::uint32_t tid) {
    set_state(tid, SP_STATES);
    threads_.at(tid).flags |= SP_THREAD_DEAD;
  }
  bool has_thread(std::uint32_t tid) const { return threads_.count(tid) != 0; }

  std::uint64_t clock = 1'000'000'000;
  std::uint64_t lost = 0;

  const std::string& method() const override { return method_; }
  const std::string& sched_method() const override { return sched_method_; }
  std::vector<std::pair<std::uint32_t, reactor_thread>> read_threads() const override {
    return {threads_.begin(), threads_.end()};
  }
  void drop_thread(std::uint32_t tid) override {
    note("drop_thread", static_cast<int>(tid));
    threads_.erase(tid);
  }
  std::uint64_t now_ns() const override { return clock; }
  std::uint64_t threads_lost() const override { return lost; }
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
    std::erase_if(threads_, [&](const auto& e) { return e.second.tgid == static_cast<std::uint32_t>(host_pid); });
  }
  std::vector<std::pair<int, reactor_proc>> read() const override { return {procs_.begin(), procs_.end()}; }
  std::uint64_t hook_misses() const override { return misses; }

 private:
  std::string method_ = "syscalls";
  std::string sched_method_ = "tp_btf";
  std::map<int, reactor_proc> procs_;
  std::map<std::uint32_t, reactor_thread> threads_;
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

constexpr std::uint64_t kMs = 1'000'000;

std::uint64_t state_ns(const sp::ReactorSeries& s, sp::ThreadRole role, std::uint32_t state) {
  return s.states.roles[static_cast<std::size_t>(role)][state];
}

TEST_F(ReactorFamilyTest, ThreadStatesCountTheStateInProgressAndSplitByRole) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->thread(101, 101, SP_ST_ON_CPU);  // the main thread
  kernel_->thread(102, 101, SP_ST_RUNQUEUE);
  kernel_->thread(103, 101, SP_ST_LOCK_WAIT);
  kernel_->thread(999, 555, SP_ST_ON_CPU);  // not a profiled process: never made
  kernel_->clock += 3 * kMs;
  kernel_->set_state(101, SP_ST_IDLE);
  kernel_->set_state(102, SP_ST_ON_CPU);
  kernel_->clock += 7 * kMs;  // in progress: 101 idle, 102 on CPU, 103 still waiting
  family_.poll();

  auto s = series("synchrotron1");
  using sp::ThreadRole;
  EXPECT_EQ(state_ns(s, ThreadRole::kReactor, SP_ST_ON_CPU), 3 * kMs);
  EXPECT_EQ(state_ns(s, ThreadRole::kReactor, SP_ST_IDLE), 7 * kMs);
  EXPECT_EQ(state_ns(s, ThreadRole::kOther, SP_ST_RUNQUEUE), 3 * kMs);
  EXPECT_EQ(state_ns(s, ThreadRole::kOther, SP_ST_ON_CPU), 7 * kMs);
  EXPECT_EQ(state_ns(s, ThreadRole::kOther, SP_ST_LOCK_WAIT), 10 * kMs);
  // Each thread's states sum to its wall time while profiled: 10 ms each.
  std::uint64_t reactor = 0, other = 0;
  for (auto v : s.states.roles[0]) reactor += v;
  for (auto v : s.states.roles[1]) other += v;
  EXPECT_EQ(reactor, 10 * kMs);
  EXPECT_EQ(other, 20 * kMs);
}

TEST_F(ReactorFamilyTest, AThreadsValuesNeverGoBackAndSurviveItsExit) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->thread(102, 101, SP_ST_DISK);
  kernel_->clock += 5 * kMs;
  family_.poll();  // 5 ms of disk, in progress
  EXPECT_EQ(state_ns(series("synchrotron1"), sp::ThreadRole::kOther, SP_ST_DISK), 5 * kMs);

  // The kernel closes the state at an earlier time than the agent's last read (a read racing the switch).
  kernel_->clock -= 1 * kMs;
  kernel_->set_state(102, SP_ST_ON_CPU);
  family_.poll();
  EXPECT_EQ(state_ns(series("synchrotron1"), sp::ThreadRole::kOther, SP_ST_DISK), 5 * kMs);

  kernel_->clock += 2 * kMs;
  kernel_->exit_thread(102);
  family_.poll();
  EXPECT_THAT(kernel_->calls, testing::Contains("drop_thread 102"));
  EXPECT_FALSE(kernel_->has_thread(102));
  family_.poll();
  const auto s = series("synchrotron1");
  EXPECT_EQ(state_ns(s, sp::ThreadRole::kOther, SP_ST_DISK), 5 * kMs);
  EXPECT_EQ(state_ns(s, sp::ThreadRole::kOther, SP_ST_ON_CPU), 2 * kMs);

  // The whole process goes: its threads' totals stay with the worker.
  kernel_->thread(101, 101, SP_ST_ON_CPU);
  kernel_->clock += 4 * kMs;
  discovery_.stop(101);
  discovery_.rescan();
  const auto after = series("synchrotron1");
  EXPECT_EQ(state_ns(after, sp::ThreadRole::kOther, SP_ST_DISK), 5 * kMs);
  EXPECT_EQ(state_ns(after, sp::ThreadRole::kReactor, SP_ST_ON_CPU), 4 * kMs);
}

TEST_F(ReactorFamilyTest, TheReactorsBusySplitHoldsOnlyTimeInsideTicks) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->thread(101, 101, SP_ST_ON_CPU);
  kernel_->tick_boundary(101, true);  // epoll returned
  kernel_->clock += 2 * kMs;
  kernel_->set_state(101, SP_ST_RUNQUEUE);
  kernel_->clock += 1 * kMs;
  kernel_->set_state(101, SP_ST_ON_CPU);
  kernel_->clock += 4 * kMs;
  kernel_->set_state(101, SP_ST_DISK);
  kernel_->clock += 3 * kMs;
  family_.poll();  // the tick in progress (10 ms so far) is not counted before it completes, as the histogram
  auto busy = series("synchrotron1").states.busy;
  EXPECT_EQ(busy[SP_ST_DISK], 0u);
  EXPECT_EQ(state_ns(series("synchrotron1"), sp::ThreadRole::kReactor, SP_ST_DISK), 3 * kMs);

  kernel_->set_state(101, SP_ST_ON_CPU);
  kernel_->clock += 1 * kMs;
  kernel_->tick_boundary(101, false);  // epoll called: the tick (11 ms) ends
  kernel_->tick(101, 0, 11 * kMs);
  kernel_->set_state(101, SP_ST_IDLE);
  kernel_->clock += 50 * kMs;  // idle in epoll: not part of any tick
  family_.poll();

  const auto s = series("synchrotron1");
  busy = s.states.busy;
  EXPECT_EQ(busy[SP_ST_ON_CPU], 7 * kMs);
  EXPECT_EQ(busy[SP_ST_RUNQUEUE], 1 * kMs);
  EXPECT_EQ(busy[SP_ST_DISK], 3 * kMs);
  EXPECT_EQ(busy[SP_ST_IDLE], 0u);
  std::uint64_t sum = 0;
  for (auto v : busy) sum += v;
  EXPECT_EQ(sum, s.ticks.sum_ns);
  EXPECT_EQ(state_ns(s, sp::ThreadRole::kReactor, SP_ST_IDLE), 50 * kMs);

  kernel_->lost = 3;
  const std::string text = sp::test::exposition(family_);
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_busy_seconds_total", "synchrotron1", ",state=\"disk\""),
            "0.003");
  EXPECT_EQ(worker_sample(text, "synapse_profiler_reactor_busy_seconds_total", "synchrotron1", ",state=\"runqueue\""),
            "0.001");
  EXPECT_EQ(
      worker_sample(text, "synapse_profiler_thread_seconds_total", "synchrotron1", ",role=\"reactor\",state=\"idle\""),
      "0.05");
  EXPECT_EQ(
      worker_sample(text, "synapse_profiler_thread_seconds_total", "synchrotron1", ",role=\"other\",state=\"on_cpu\""),
      "0");
  EXPECT_THAT(text, HasSubstr("synapse_profiler_thread_states_lost_total 3\n"));
}

}  // namespace
