// GcFamily against a fake kernel side: what it attaches with (planned from the synthetic interpreters of
// tests/data/elf, reached through a fake /proc/PID/root), per-worker totals across process exits and restarts, the
// pauses it hands the sink, and its exposition.
#include "agent/families/gc_family.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/python/elf_file.h"
#include "family_test_util.h"

namespace {

using sp::agent::GcAttachMethod;
using sp::agent::GcAttachSpec;
using sp::agent::GcFamily;
using sp::agent::GcHistEntry;
using sp::test::worker_labels;
using sp::test::worker_sample;
using testing::ElementsAre;
using testing::HasSubstr;
using testing::IsEmpty;

constexpr int kFakeRingFd = 77;

// The GC object as the family sees it: the test makes collections happen in traced processes (counted in the
// process's histograms like gc.bpf.c does, and recorded in the ring unless it is full), scripts attach failures,
// and reads back which calls the family made.
class FakeGcKernel : public sp::agent::GcKernel, public sp::test::FakeKernelSide<GcAttachSpec, gc_event> {
 public:
  bool ring_full = false;  // collections are counted in the histograms and as lost records only
  std::uint64_t misses = 0;

  // One collection of `generation` in process `tgid` that took `duration_ns`.
  void collection(std::uint32_t tgid, int generation, std::uint64_t duration_ns,
                  std::int64_t collected = SP_GC_COLLECTED_UNKNOWN, std::uint32_t tid = 0) {
    gc_hist& h = hist_[{tgid, generation}];
    ++h.buckets[sp::LatencyHistogram::bucket_of(duration_ns)];
    ++h.count;
    h.sum_ns += duration_ns;
    if (collected >= 0) {
      h.collected += static_cast<std::uint64_t>(collected);
    } else {
      ++h.collected_unknown;
    }
    now_ns_ += duration_ns + 1'000'000;
    if (ring_full) {
      ++lost_;
      return;
    }
    gc_event e{};
    e.tgid = tgid;
    e.tid = tid ? tid : tgid;
    e.start_ns = now_ns_ - duration_ns;
    e.end_ns = now_ns_;
    e.collected = collected;
    e.generation = generation;
    push(e);
  }

  bool attach(const GcAttachSpec& spec, std::string& error) override { return scripted_attach(spec, error); }
  void detach(int host_pid) override { note("detach", host_pid); }
  std::vector<GcHistEntry> read_hist() const override {
    std::vector<GcHistEntry> out;
    for (const auto& [key, value] : hist_) out.push_back({{key.first, key.second}, value});
    return out;
  }
  void erase_hist(int host_pid) override {
    note("erase_hist", host_pid);
    std::erase_if(hist_, [&](const auto& e) { return e.first.first == static_cast<std::uint32_t>(host_pid); });
  }
  int drain(const std::function<void(const gc_event&)>& fn) override { return drain_ring(fn); }
  int ring_fd() const override { return kFakeRingFd; }
  std::uint64_t events_lost() const override { return lost_; }
  std::uint64_t hook_misses() const override { return misses; }

 private:
  std::map<std::pair<std::uint32_t, std::int32_t>, gc_hist> hist_;
  std::uint64_t lost_ = 0;
  std::uint64_t now_ns_ = 1'000'000'000;
};

// The file offset of `symbol` in tests/data/elf/`file`, read from its symbol table: where a uprobe goes.
std::uint64_t file_offset_of(const std::string& file, const std::string& symbol) {
  const std::string path = std::string(SP_TEST_DATA_DIR) + "/elf/" + file;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::string error;
  auto elf = fd >= 0 ? sp::ElfFile::from_fd(fd, error) : std::nullopt;
  if (fd >= 0) ::close(fd);
  auto sym = elf ? elf->find_symbol(symbol) : std::nullopt;
  auto offset = sym ? elf->vaddr_to_offset(sym->value) : std::nullopt;
  EXPECT_TRUE(offset) << path << " " << symbol << " " << error;
  return offset.value_or(0);
}

// Worker `name` as `pid`, running the synthetic interpreter `python` (a path inside its root).
sp::WorkerInfo gc_worker(int pid, const std::string& name, const std::string& python = "/fake_gc_nopie") {
  sp::WorkerInfo w = sp::test::make_worker(pid, name);
  w.python_path = python;
  return w;
}

class GcFamilyTest : public sp::test::FamilyTest<GcFamily, sp::agent::GcKernel, FakeGcKernel> {
 protected:
  // Worker `name` runs as `pid` on the synthetic interpreter `python` from the next rescan on.
  void run(int pid, const std::string& name, const std::string& python = "/fake_gc_nopie") {
    proc_.add(pid);
    discovery_.start(gc_worker(pid, name, python));
  }

  // The family's totals for one worker and generation (retired processes included).
  sp::GcSeries series(const std::string& worker, int generation) const {
    const auto snap = family_.snapshot();
    const auto it = snap.series.find({worker_labels(worker), generation});
    return it == snap.series.end() ? sp::GcSeries{} : it->second;
  }
};

TEST_F(GcFamilyTest, AttachesByTheMethodPlannedForEachInterpreter) {
  run(101, "synchrotron1", "/fake_gc_nopie");          // method table only: gc.collect()'s wrapper
  run(102, "federation_sender1", "/fake_gc_symbols");  // unstripped: the collection function itself
  discovery_.rescan();

  ASSERT_EQ(kernel_->specs.size(), 2u);
  const GcAttachSpec& table = kernel_->specs[0];
  EXPECT_EQ(table.host_pid, 101);
  EXPECT_EQ(table.binary_path, proc_.path() + "/101/root/fake_gc_nopie");
  EXPECT_EQ(table.method, GcAttachMethod::Uprobe);
  EXPECT_EQ(table.func_offset, file_offset_of("fake_gc_nopie", "fake_gc_collect"));
  // gc.collect()'s arguments and result are PyLongs, laid out as in the fixture's 3.11.
  EXPECT_EQ(table.target.gen_source, static_cast<__u32>(SP_GC_GEN_FASTCALL));
  EXPECT_EQ(table.target.ret_source, static_cast<__u32>(SP_GC_RET_PYLONG));
  EXPECT_EQ(table.target.long_layout, static_cast<__u32>(SP_PYLONG_SIZE_SIGNED));
  EXPECT_EQ(table.description, "worker synchrotron1 (pid 101)");

  const GcAttachSpec& symbol = kernel_->specs[1];
  EXPECT_EQ(symbol.binary_path, proc_.path() + "/102/root/fake_gc_symbols");
  EXPECT_EQ(symbol.method, GcAttachMethod::Uprobe);
  EXPECT_EQ(symbol.func_offset, file_offset_of("fake_gc_symbols", "gc_collect_main.lto_priv.0"));
  EXPECT_EQ(symbol.target.gen_source, static_cast<__u32>(SP_GC_GEN_ARG2_INT));
  EXPECT_EQ(symbol.target.ret_source, static_cast<__u32>(SP_GC_RET_INT));

  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].labels, worker_labels("synchrotron1"));
  EXPECT_EQ(status[0].probe, "gc");
  EXPECT_EQ(status[0].method, "methoddef");
  EXPECT_TRUE(status[0].attached);
  EXPECT_EQ(status[1].labels, worker_labels("federation_sender1"));
  EXPECT_EQ(status[1].method, "symbol");
  EXPECT_TRUE(status[1].attached);
}

TEST_F(GcFamilyTest, AKernelRefusalIsReportedWithTheKernelsError) {
  kernel_->refusals[101] = "attach uprobe fake_gc_nopie:0x11ae for worker synchrotron1 (pid 101): Permission denied";
  run(101, "synchrotron1");
  run(102, "synchrotron2");
  discovery_.rescan();

  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].host_pid, 101);
  EXPECT_FALSE(status[0].attached);
  EXPECT_EQ(status[0].method, "methoddef");  // the plan worked, the kernel said no
  EXPECT_EQ(status[0].error, kernel_->refusals[101]);
  EXPECT_TRUE(status[1].attached);
  EXPECT_THAT(status[1].error, IsEmpty());
}

TEST_F(GcFamilyTest, APlanFailureAttachesNothingAndSaysWhy) {
  run(101, "no_python", "");
  run(102, "no_such_file", "/usr/bin/python3.99");
  discovery_.start(gc_worker(103, "no_proc_entry"));  // its /proc entry went before the attach
  discovery_.rescan();

  EXPECT_THAT(kernel_->calls, IsEmpty());
  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 3u);
  for (const auto& st : status) {
    EXPECT_EQ(st.method, "none") << st.host_pid;
    EXPECT_FALSE(st.attached) << st.host_pid;
  }
  EXPECT_THAT(status[0].error, HasSubstr("no Python executable or libpython"));
  EXPECT_THAT(status[1].error, HasSubstr("open /usr/bin/python3.99 inside the process's root"));
  EXPECT_THAT(status[2].error, HasSubstr("open " + proc_.path() + "/103/root"));
}

TEST(GcFamily, AForcedMethodTheInterpreterLacksIsAPlanFailure) {
  sp::test::FakeProcRoot proc;
  proc.add(101);
  FakeGcKernel* kernel = nullptr;
  GcFamily family(proc.path(), sp::test::fake_opener<sp::agent::GcKernel>(kernel), sp::GcMethod::Usdt);
  std::string why;
  ASSERT_TRUE(family.start(why)) << why;
  sp::test::FakeDiscovery discovery(family);
  discovery.start(gc_worker(101, "synchrotron1"));
  discovery.rescan();

  EXPECT_THAT(kernel->calls, IsEmpty());
  const auto status = family.attach_status();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].method, "none");
  EXPECT_THAT(status[0].error, HasSubstr("usdt"));
}

TEST_F(GcFamilyTest, CountsOfAnExitedProcessStayWithItsWorkerAndARestartAddsToThem) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->collection(101, 0, 2'000'000, 30);
  kernel_->collection(101, 2, 400'000'000);  // count unreadable
  family_.poll();
  EXPECT_EQ(series("synchrotron1", 0).pauses.count, 1u);
  // One more collection after the last poll: the process then exits and is restarted as 102 before the next scan.
  kernel_->collection(101, 0, 3'000'000, 12);
  discovery_.stop(101);
  run(102, "synchrotron1");
  discovery_.rescan();

  // The kernel forgets 101's histograms; the worker does not.
  EXPECT_THAT(kernel_->calls, ElementsAre("attach 101", "detach 101", "erase_hist 101", "attach 102"));
  EXPECT_EQ(series("synchrotron1", 0).pauses.count, 2u);
  EXPECT_EQ(series("synchrotron1", 0).collected, 42u);
  EXPECT_EQ(series("synchrotron1", 2).collected_unknown, 1u);

  kernel_->collection(102, 0, 1'000'000, 5);
  family_.poll();
  const sp::GcSeries gen0 = series("synchrotron1", 0);
  EXPECT_EQ(gen0.pauses.count, 3u);
  EXPECT_EQ(gen0.pauses.sum_ns, 6'000'000u);
  EXPECT_EQ(gen0.collected, 47u);
  EXPECT_EQ(series("synchrotron1", 2).pauses.count, 1u);
  EXPECT_EQ(family_.snapshot().series.size(), 2u);  // one series per generation seen, not per process
}

TEST_F(GcFamilyTest, ForgettingAWorkerDropsItsRetiredTotalsButNotWhatALiveProcessCounted) {
  run(101, "synchrotron1");
  run(201, "federation_sender1");
  discovery_.rescan();
  kernel_->collection(101, 0, 1'000'000, 1);
  kernel_->collection(201, 1, 1'000'000, 2);
  family_.poll();
  discovery_.stop(101);
  run(102, "synchrotron1");
  discovery_.stop(201);
  discovery_.rescan();
  kernel_->collection(102, 0, 1'000'000, 4);
  family_.poll();
  ASSERT_EQ(series("synchrotron1", 0).pauses.count, 2u);

  family_.forget_worker(worker_labels("synchrotron1"));
  family_.forget_worker(worker_labels("federation_sender1"));

  EXPECT_EQ(series("synchrotron1", 0).pauses.count, 1u);  // 102's own
  EXPECT_EQ(series("synchrotron1", 0).collected, 4u);
  EXPECT_EQ(family_.snapshot().series.count({worker_labels("federation_sender1"), 1}), 0u);
}

TEST_F(GcFamilyTest, PausesReachTheSinkWithTheirWorkersLabelsAndOthersDoNot) {
  run(101, "synchrotron1");
  run(201, "federation_sender1");
  discovery_.rescan();
  kernel_->collection(101, 1, 5'000'000, 7, 111);
  kernel_->collection(999, 0, 1'000'000, 1);  // a process that is no worker of ours
  kernel_->collection(201, 2, 9'000'000);
  family_.drain();

  ASSERT_EQ(sink_.pauses.size(), 2u);
  const sp::GcPause& first = sink_.pauses[0];
  EXPECT_EQ(first.worker, worker_labels("synchrotron1"));
  EXPECT_EQ(first.tgid, 101u);
  EXPECT_EQ(first.tid, 111u);
  EXPECT_EQ(first.end_ns - first.start_ns, 5'000'000u);
  EXPECT_EQ(first.generation, 1);
  EXPECT_EQ(first.collected, 7);
  EXPECT_EQ(sink_.pauses[1].worker, worker_labels("federation_sender1"));
  EXPECT_EQ(sink_.pauses[1].generation, 2);
  EXPECT_EQ(sink_.pauses[1].collected, -1);

  // poll() drains too, and folds the histograms: 999's are not ours either.
  kernel_->collection(101, 0, 1'000'000, 3);
  family_.poll();
  ASSERT_EQ(sink_.pauses.size(), 3u);
  EXPECT_EQ(sink_.pauses[2].worker, worker_labels("synchrotron1"));
  const auto snap = family_.snapshot();
  EXPECT_EQ(snap.series.size(), 3u);
  EXPECT_EQ(series("synchrotron1", 0).pauses.count, 1u);
  EXPECT_EQ(snap.events_received, 4u);  // every record the ring held, whoever it was from
}

// The agent forgets a removed worker in the hub right after update(): the pauses its process left in the ring since
// the last poll must reach the sink during update(), while the process still has its labels.
TEST_F(GcFamilyTest, PausesLeftInTheRingByAnExitedProcessReachTheSinkBeforeItIsForgotten) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->collection(101, 0, 2'000'000, 5);
  discovery_.stop(101);
  discovery_.rescan();

  ASSERT_EQ(sink_.pauses.size(), 1u);
  EXPECT_EQ(sink_.pauses[0].worker, worker_labels("synchrotron1"));
  EXPECT_EQ(sink_.pauses[0].collected, 5);
}

TEST_F(GcFamilyTest, CountsAndRingComeFromTheKernel) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->ring_full = true;
  kernel_->collection(101, 0, 1'000'000);
  kernel_->collection(101, 0, 1'000'000);
  kernel_->misses = 3;
  family_.poll();

  EXPECT_THAT(family_.ring_fds(), ElementsAre(kFakeRingFd));
  const sp::agent::FamilyCounts counts = family_.counts();
  EXPECT_EQ(counts.events_lost, 2u);
  EXPECT_EQ(counts.hook_misses, 3u);
  EXPECT_THAT(sink_.pauses, IsEmpty());
  EXPECT_EQ(series("synchrotron1", 0).pauses.count, 2u);  // the histograms counted what the ring lost
  EXPECT_EQ(family_.snapshot().events_lost, 2u);
}

TEST_F(GcFamilyTest, CollectExportsPauseHistogramsAndCollectedObjectsPerWorkerAndGeneration) {
  run(101, "synchrotron1");
  discovery_.rescan();
  kernel_->collection(101, 0, 40'000, 3);  // <= 50 us
  kernel_->collection(101, 0, 3'000'000, 4);
  kernel_->collection(101, 0, 3'000'000);
  kernel_->collection(101, 2, 1'500'000'000, 100);
  family_.poll();
  discovery_.stop(101);
  run(102, "synchrotron1");
  discovery_.rescan();
  kernel_->collection(102, 0, 40'000, 1);
  family_.poll();

  const std::string text = sp::test::exposition(family_);
  // synchrotron1's sample of `metric` for a generation (and a bucket).
  auto value = [&](const std::string& metric, const char* generation, const std::string& le = "") {
    return worker_sample(text, metric, "synchrotron1",
                         std::string(",generation=\"") + generation + "\"" + (le.empty() ? "" : ",le=\"" + le + "\""));
  };
  const std::string bucket = "synapse_profiler_gc_pause_seconds_bucket";
  EXPECT_EQ(value(bucket, "0", "5e-05"), "2") << text;
  EXPECT_EQ(value(bucket, "0", "0.0025"), "2");
  EXPECT_EQ(value(bucket, "0", "0.005"), "4");
  EXPECT_EQ(value(bucket, "0", "+Inf"), "4");
  EXPECT_EQ(value("synapse_profiler_gc_pause_seconds_count", "0"), "4");
  EXPECT_EQ(value(bucket, "2", "1"), "0");
  EXPECT_EQ(value(bucket, "2", "2.5"), "1");
  EXPECT_EQ(value("synapse_profiler_gc_pause_seconds_sum", "2"), "1.5");
  EXPECT_EQ(value("synapse_profiler_gc_collected_objects_total", "0"), "8");
  EXPECT_EQ(value("synapse_profiler_gc_collected_objects_total", "2"), "100");
  EXPECT_THAT(text, testing::Not(HasSubstr("generation=\"1\"")));
}

TEST(GcFamily, AKernelThatCannotLoadLeavesTheFamilyInert) {
  GcFamily family("/nonexistent", [](std::string& error) -> std::unique_ptr<sp::agent::GcKernel> {
    error = "load gc.bpf.o: Operation not permitted";
    return nullptr;
  });
  std::string why;
  EXPECT_FALSE(family.start(why));
  EXPECT_EQ(why, "load gc.bpf.o: Operation not permitted");
  EXPECT_FALSE(family.started());
  EXPECT_THAT(family.ring_fds(), IsEmpty());
  sp::test::FakeDiscovery discovery(family);
  discovery.start(sp::test::make_worker(101, "synchrotron1"));
  discovery.rescan();
  family.poll();
  EXPECT_THAT(family.attach_status(), IsEmpty());
  EXPECT_EQ(family.counts().events_lost, 0u);
  EXPECT_THAT(sp::test::exposition(family), testing::Not(HasSubstr("synchrotron1")));
}

}  // namespace
