// The GC probe against real CPython processes: every collection the workload times itself must be counted, in the
// right generation, with its duration, and never under another process.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/python/elf_file.h"
#include "core/python/gc_locator.h"
#include "core/util/ring_waker.h"

#include "probes/gc_probe.h"
#include "harness.h"
#include "truth.h"

using namespace std::chrono_literals;
using sp::test::Workload;
using sp::test::WorkloadSpec;

namespace {

struct GenTotals {
  std::uint64_t count = 0;
  std::uint64_t ns = 0;
  std::uint64_t collected = 0;
};

std::map<int, GenTotals> truth_gc(const std::string& truth_path) {
  std::map<int, GenTotals> out;
  for (const auto& r : sp::test::truth_of_type(sp::test::read_truth(truth_path), "gc")) {
    auto& t = out[static_cast<int>(*r.integer("gen"))];
    t.count++;
    t.ns += static_cast<std::uint64_t>(*r.integer("end_ns") - *r.integer("start_ns"));
    t.collected += static_cast<std::uint64_t>(*r.integer("collected"));
  }
  return out;
}

std::map<int, GenTotals> probe_gc(const sp::bpf::GcProbe& probe, int pid) {
  std::map<int, GenTotals> out;
  for (const auto& e : probe.read_hist()) {
    if (e.key.tgid != static_cast<__u32>(pid)) continue;
    auto& t = out[e.key.generation];
    t.count += e.value.count;
    t.ns += e.value.sum_ns;
    t.collected += e.value.collected;
  }
  return out;
}

// Tolerance from the issue: 5 % of the workload's own total, or 50 us per pause, whichever is larger.
void expect_close_durations(const GenTotals& measured, const GenTotals& truth, int gen) {
  double tol = std::max(0.05 * static_cast<double>(truth.ns), 50'000.0 * static_cast<double>(truth.count));
  EXPECT_NEAR(static_cast<double>(measured.ns), static_cast<double>(truth.ns), tol) << "generation " << gen;
}

class GcProbeIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
    std::string error;
    probe_ = sp::bpf::GcProbe::create(error);
    ASSERT_TRUE(probe_) << error;
    dir_ = sp::test::make_temp_dir("sp-gc-it");
  }

  std::unique_ptr<Workload> start(const std::string& name, const std::string& schedule, double duration_s) {
    WorkloadSpec spec;
    spec.name = name;
    spec.duration_s = duration_s;
    // Enough garbage that each pause lasts milliseconds: the workload's own timing around gc.collect() then differs
    // from the kernel's by far less than the tolerance even when the machine is busy.
    spec.extra_args = {"--gc-schedule", schedule, "--garbage-per-gc", "20000", "--io-rate", "0", "--start-gate", dir_ + "/" + name + ".gate"};
    auto w = std::make_unique<Workload>(spec, dir_);
    EXPECT_TRUE(w->wait_ready()) << sp::test::read_text(w->log_path());
    return w;
  }

  void open_gate(const Workload& w) { std::ofstream(dir_ + "/" + w.spec().name + ".gate").put('\n'); }

  sp::bpf::GcAttachSpec usdt_spec(const Workload& w, const std::string& binary = "/usr/bin/python3.11") {
    sp::bpf::GcAttachSpec s;
    s.host_pid = w.pid();
    s.binary_path = "/proc/" + std::to_string(w.pid()) + "/root" + binary;
    s.method = sp::bpf::GcAttachMethod::Usdt;
    s.target.gen_source = SP_GC_GEN_USDT;
    s.target.ret_source = SP_GC_RET_USDT;
    s.description = "workload " + w.spec().name;
    return s;
  }

  std::unique_ptr<sp::bpf::GcProbe> probe_;
  std::string dir_;
};

}  // namespace

TEST_F(GcProbeIT, UsdtCountsEveryCollectionPerGenerationExactly) {
  auto w = start("gc_usdt", "0:20,1:5,2:2", 3);
  std::string error;
  ASSERT_TRUE(probe_->attach(usdt_spec(*w), error)) << error;
  open_gate(*w);
  auto st = w->process().wait(20s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(w->log_path());

  auto truth = truth_gc(w->truth_path());
  auto measured = probe_gc(*probe_, w->pid());
  ASSERT_EQ(truth.size(), 3u);
  for (const auto& [gen, t] : truth) {
    EXPECT_EQ(measured[gen].count, t.count) << "generation " << gen;
    EXPECT_EQ(measured[gen].collected, t.collected) << "generation " << gen;
    expect_close_durations(measured[gen], t, gen);
  }
  EXPECT_EQ(measured.count(SP_GC_GEN_UNKNOWN), 0u);

  // Per-pause events: one per collection, each inside the workload's own interval for it.
  std::vector<gc_event> events;
  probe_->drain([&](const gc_event& e) { events.push_back(e); });
  std::uint64_t total = 0;
  for (const auto& [gen, t] : truth) total += t.count;
  EXPECT_EQ(events.size() + probe_->events_lost(), total);
  for (const auto& e : events) {
    EXPECT_EQ(e.tgid, static_cast<__u32>(w->pid()));
    EXPECT_GT(e.end_ns, e.start_ns);
  }
}

// A burst of pauses larger than the ring buffer holds: the BPF side wakes a consumer that would otherwise sleep for a
// minute once the ring is a quarter full (sp_ring_flags), so more records arrive than the ring could ever hold, and
// every pause is either delivered or counted as lost.
TEST_F(GcProbeIT, AFillingRingWakesTheConsumerMidBurst) {
  constexpr int kPauses = 20000;
  constexpr std::size_t kRingRecords = SP_GC_RING_BYTES / (sizeof(gc_event) + 8);  // 8: the ring's record header
  const std::string gate = dir_ + "/burst.gate", ready = dir_ + "/burst.ready";
  sp::test::Process p({"/usr/bin/python3.11", "-c",
                       "import gc, os, sys, time\n"
                       "gc.disable()\n"
                       "open(sys.argv[2], 'w').close()\n"
                       "while not os.path.exists(sys.argv[1]): time.sleep(0.005)\n"
                       "for _ in range(int(sys.argv[3])): gc.collect(0)\n"
                       "os._exit(0)\n",
                       gate, ready, std::to_string(kPauses)},
                      dir_ + "/burst.log");
  sp::bpf::GcAttachSpec spec;
  spec.host_pid = p.pid();
  spec.binary_path = "/proc/" + std::to_string(p.pid()) + "/root/usr/bin/python3.11";
  spec.method = sp::bpf::GcAttachMethod::Usdt;
  spec.target.gen_source = SP_GC_GEN_USDT;
  spec.target.ret_source = SP_GC_RET_USDT;
  spec.description = "gc burst";
  std::string error;
  ASSERT_TRUE(probe_->attach(spec, error)) << error;
  ASSERT_TRUE(sp::test::wait_for([&] { return std::filesystem::exists(ready); }, 10s));
  probe_->drain([](const gc_event&) {});  // start-up collections: not part of the burst
  const std::uint64_t lost_before = probe_->events_lost();

  sp::RingWaker waker;
  ASSERT_TRUE(waker.watch(probe_->ring_fd(), error)) << error;
  std::atomic<bool> done{false};
  std::size_t delivered = 0, ring_wakes = 0;
  std::thread consumer([&] {
    while (!done) {
      if (waker.wait(60s) == sp::RingWaker::Woken::Ring) ++ring_wakes;
      probe_->drain([&](const gc_event& e) { delivered += e.tgid == static_cast<__u32>(p.pid()) ? 1 : 0; });
    }
    probe_->drain([&](const gc_event& e) { delivered += e.tgid == static_cast<__u32>(p.pid()) ? 1 : 0; });
  });
  std::ofstream(gate).put('\n');
  auto st = p.wait(60s);
  done = true;
  waker.interrupt();
  consumer.join();
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(dir_ + "/burst.log");

  EXPECT_GE(ring_wakes, 1u);
  // Without the wakeups the consumer would sleep through the burst and find at most one ring's worth.
  EXPECT_GT(delivered, 2 * kRingRecords);
  EXPECT_EQ(delivered + (probe_->events_lost() - lost_before), static_cast<std::size_t>(kPauses));
}

// Every CPython version this machine has unstripped builds of (pyenv, shared libpython), by symbol and by the method
// table: checks the per-version facts of userspace/core/python/gc_locator.cpp (function names, argument positions, PyLong
// layouts before and after 3.12) against the interpreter's own count of every collection.
namespace {

constexpr const char* kGcLoop = R"py(
import gc, os, sys, time
gc.disable()
gate, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(out + ".ready", "w").close()
while not os.path.exists(gate):
    time.sleep(0.005)
lines = []
for i in range(n):
    gen = i % 3
    for _ in range(100 * (i % 7)):
        a = []
        a.append(a)
    t0 = time.monotonic_ns()
    c = gc.collect(gen) if i % 2 else gc.collect(generation=gen)
    t1 = time.monotonic_ns()
    lines.append('{"type":"gc","gen":%d,"start_ns":%d,"end_ns":%d,"collected":%d}\n' % (gen, t0, t1, c))
with open(out, "w") as f:
    f.writelines(lines)
os._exit(0)
)py";

struct PyenvPython {
  std::string exe;
  std::string libpython;
};

std::vector<PyenvPython> pyenv_pythons() {
  std::vector<PyenvPython> out;
  for (const char* v : {"3.9", "3.10", "3.11", "3.12", "3.13"}) {
    std::error_code ec;
    for (const auto& d : std::filesystem::directory_iterator("/root/.pyenv/versions", ec)) {
      std::string name = d.path().filename();
      if (!name.starts_with(std::string(v) + ".")) continue;
      std::string exe = d.path() / "bin" / ("python" + std::string(v));
      std::string lib = d.path() / "lib" / ("libpython" + std::string(v) + ".so.1.0");
      if (std::filesystem::exists(exe) && std::filesystem::exists(lib)) out.push_back({exe, lib});
    }
  }
  return out;
}

}  // namespace

TEST_F(GcProbeIT, EveryPyenvVersionBySymbolAndByMethodTable) {
  auto pythons = pyenv_pythons();
  if (pythons.empty()) SP_SKIP_UNLESS_BPF_REQUIRED("no unstripped CPython builds under /root/.pyenv/versions");
  for (const auto& py : pythons) {
    for (auto method : {sp::GcMethod::Symbol, sp::GcMethod::MethodDef}) {
      std::string what = py.libpython + " by " + std::string(sp::gc_method_name(method));
      SCOPED_TRACE(what);
      int fd = open(py.libpython.c_str(), O_RDONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      std::string error;
      auto elf = sp::ElfFile::from_fd(fd, error);
      close(fd);
      ASSERT_TRUE(elf) << error;
      auto plan = sp::plan_gc_probe(*elf, py.libpython, error, method);
      ASSERT_TRUE(plan) << error;
      ASSERT_TRUE(plan->generation_readable && plan->collected_readable) << plan->detail;

      std::string gate = dir_ + "/gate", out = dir_ + "/truth.jsonl";
      std::filesystem::remove(gate);
      std::filesystem::remove(out + ".ready");
      sp::test::Process p({py.exe, "-c", kGcLoop, gate, out, "60"}, dir_ + "/py.log");
      // The interpreter maps its libpython at start; attach once the process exists.
      sp::bpf::GcAttachSpec spec;
      spec.host_pid = p.pid();
      spec.binary_path = "/proc/" + std::to_string(p.pid()) + "/root" + py.libpython;
      spec.method = sp::bpf::GcAttachMethod::Uprobe;
      spec.func_offset = plan->func_offset;
      spec.target.gen_source = static_cast<__u32>(plan->generation);
      spec.target.ret_source = static_cast<__u32>(plan->collected);
      spec.target.long_layout = static_cast<__u32>(plan->long_layout ? plan->long_layout->kind
                                                                      : sp::PyLongLayoutKind::SizeSigned);
      spec.description = what;
      ASSERT_TRUE(probe_->attach(spec, error)) << error;
      // Automatic collections during interpreter start-up are real but not in the script's record: count from the
      // moment the script has disabled automatic GC.
      ASSERT_TRUE(sp::test::wait_for([&] { return std::filesystem::exists(out + ".ready"); }, 10s));
      std::map<int, GenTotals> at_gate = probe_gc(*probe_, p.pid());
      std::ofstream(gate).put('\n');
      auto st = p.wait(30s);
      ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << sp::test::read_text(dir_ + "/py.log");
      auto truth = truth_gc(out);
      auto measured = probe_gc(*probe_, p.pid());
      ASSERT_EQ(truth.size(), 3u);
      for (const auto& [gen, t] : truth) {
        EXPECT_EQ(measured[gen].count - at_gate[gen].count, t.count) << "generation " << gen;
        EXPECT_EQ(measured[gen].collected - at_gate[gen].collected, t.collected) << "generation " << gen;
      }
      EXPECT_EQ(measured[SP_GC_GEN_UNKNOWN].count, at_gate[SP_GC_GEN_UNKNOWN].count);
      probe_->detach(p.pid());
      probe_->erase_hist(p.pid());
    }
  }
}
