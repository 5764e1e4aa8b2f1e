// The NVMe command probes on this kernel. This machine has no NVMe driver: the programs must still pass the verifier
// (loaded without attaching), and the family must report itself off with the reason instead of failing the agent.
// Decoding of what the driver's tracepoints deliver is covered with synthetic events in tests/unit/nvme_stats_test.cpp.
#include <unistd.h>

#include "agent/families/nvme_family.h"
#include "probes/nvme_probe.h"
#include "probes/openers.h"
#include "exporter/metric_builders.h"
#include "exporter/probe_metrics.h"
#include "harness.h"

TEST(NvmeProbeIT, ProgramsPassTheVerifier) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string error;
  EXPECT_TRUE(sp::bpf::nvme_programs_verify(error)) << error;
}

TEST(NvmeProbeIT, FamilyIsOffWithItsReasonWhereTheDriverIsAbsentAndOnWhereItIsPresent) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string why_absent;
  const bool present = sp::bpf::kernel_has_nvme_tracepoints(why_absent);
  sp::agent::NvmeFamily family("/sys", {}, sp::bpf::nvme_kernel());
  std::string error;
  const bool started = family.start(error);
  family.poll();
  auto snap = family.snapshot();
  EXPECT_EQ(started, present) << error;
  EXPECT_EQ(snap.active, started);
  if (present) {
    EXPECT_NE(snap.hooks.find("nvme_complete_rq"), std::string::npos);
  } else {
    EXPECT_NE(error.find("nvme"), std::string::npos) << error;
    EXPECT_EQ(snap.why_not, error);
    EXPECT_TRUE(snap.series.empty());
    // Off means silent: the families exist but carry no samples.
    std::string text = sp::exporter::to_text(sp::exporter::nvme_metrics(snap));
    EXPECT_EQ(text.find("synapse_profiler_nvme_commands_total{"), std::string::npos) << text;
  }
}
