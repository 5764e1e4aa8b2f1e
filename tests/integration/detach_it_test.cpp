// Nothing of ours stays in the kernel: after SIGTERM the agent detaches and exits 0, after SIGKILL the kernel
// releases every program, link and uprobe with the process's file descriptors; a restarted agent then works.
// Each agent's programs are the ones its own process holds (their IDs, from /proc/PID/fdinfo), so that other agents
// on the machine (a real one, other test runs) neither count nor have to be gone.
#include <signal.h>

#include <set>
#include <thread>

#include "harness.h"

using namespace std::chrono_literals;

namespace {

// The programs `agent` holds once it has attached; more than 10 of ours (every family's).
std::set<std::uint64_t> held_by(const sp::test::AgentProcess& agent) {
  const std::set<std::uint64_t> ids = sp::test::bpf_programs_held_by(agent.pid());
  EXPECT_GT(ids.size(), 10u) << "programs held by the agent (pid " << agent.pid() << ")";
  return ids;
}

bool all_freed(const std::set<std::uint64_t>& ids) {
  // The kernel frees a program in deferred work after its last holder has gone (CI saw one listed 22 ms after).
  return sp::test::wait_for([&] { return sp::test::bpf_programs_loaded(ids) == 0; }, 5s);
}

bool gc_attached(const sp::test::AgentProcess& a, const std::string& worker) {
  return sp::test::metric_value(a.metrics(), "synapse_profiler_probe_attached", {{"worker", worker}, {"probe", "gc"}}) ==
         1.0;
}

}  // namespace

TEST(DetachIT, SigtermAndSigkillLeaveNothingAttachedAndARestartWorks) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-detach-it");
  sp::test::WorkloadSpec spec;
  spec.name = "detach_worker";
  spec.duration_s = 60;
  spec.extra_args = {"--gc-schedule", "0:20", "--io-rate", "0"};
  sp::test::Workload w(spec, dir);
  ASSERT_TRUE(w.wait_ready()) << sp::test::read_text(w.log_path());

  {
    sp::test::AgentProcess agent(dir);
    ASSERT_TRUE(agent.running()) << agent.log();
    ASSERT_TRUE(sp::test::wait_for([&] { return gc_attached(agent, "detach_worker"); }, 10s)) << agent.log();
    const std::set<std::uint64_t> ids = held_by(agent);
    EXPECT_TRUE(agent.stop()) << "SIGTERM: a clean exit\n" << agent.log();
    EXPECT_TRUE(all_freed(ids)) << sp::test::bpf_programs_loaded(ids) << " of " << ids.size() << " still loaded";
  }
  std::set<std::uint64_t> killed;
  {
    sp::test::AgentProcess agent(dir);
    ASSERT_TRUE(agent.running()) << agent.log();
    ASSERT_TRUE(sp::test::wait_for([&] { return gc_attached(agent, "detach_worker"); }, 10s)) << agent.log();
    killed = held_by(agent);
    // ~AgentProcess sends SIGKILL to a running agent.
  }
  EXPECT_TRUE(all_freed(killed)) << sp::test::bpf_programs_loaded(killed) << " of " << killed.size()
                                 << " still loaded after SIGKILL";
  // The worker is unaffected, and a new agent attaches again and counts its collections.
  EXPECT_TRUE(w.process().running());
  sp::test::AgentProcess again(dir);
  ASSERT_TRUE(again.running()) << again.log();
  ASSERT_TRUE(sp::test::wait_for([&] { return gc_attached(again, "detach_worker"); }, 10s)) << again.log();
  EXPECT_TRUE(sp::test::wait_for(
      [&] {
        return sp::test::metric_value(again.metrics(), "synapse_profiler_gc_pause_seconds_count",
                                      {{"worker", "detach_worker"}, {"generation", "0"}})
                   .value_or(0) > 5;
      },
      5s));
  EXPECT_TRUE(again.stop());
}
