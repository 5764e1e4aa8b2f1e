// What the probe-family tests share: a sink that keeps every event it is handed, workers as discovery reports them,
// a discovery the test drives by hand (the real DiscoveryState computes the diffs the family sees), a /proc tree
// holding only what the families read, and sample lookups in the exposition text a family produces.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../../common/temp_dir.h"
#include "agent/probe_family.h"
#include "core/correlate/hub.h"
#include "core/model/events.h"
#include "core/proc/discovery.h"
#include "exporter/metric_builders.h"

namespace sp::test {

inline constexpr const char* kWorkerApp = "synapse.app.generic_worker";

class RecordingSink : public EventSink {
 public:
  void gc_pause(const GcPause& p) override { pauses.push_back(p); }
  void query(const QueryEvent& q) override { queries.push_back(q); }

  std::vector<GcPause> pauses;
  std::vector<QueryEvent> queries;
};

// What the fake kernel sides share: attach failures the test scripts per PID, a log of what the family asked of the
// kernel ("attach 101", "detach 101", ...), the specs it attached with, and a ring of records for it to drain.
template <typename Spec, typename Record>
class FakeKernelSide {
 public:
  std::map<int, std::string> refusals;  // host PID -> the error its attach fails with
  std::vector<std::string> calls;
  std::vector<Spec> specs;

 protected:
  void note(const char* call, int pid) { calls.push_back(std::string(call) + " " + std::to_string(pid)); }
  bool scripted_attach(const Spec& spec, std::string& error) {
    note("attach", spec.host_pid);
    specs.push_back(spec);
    if (auto it = refusals.find(spec.host_pid); it != refusals.end()) {
      error = it->second;
      return false;
    }
    return true;
  }
  void push(const Record& r) { ring_.push_back(r); }
  int drain_ring(const std::function<void(const Record&)>& fn) {
    int n = 0;
    for (; !ring_.empty(); ++n) {
      fn(ring_.front());
      ring_.pop_front();
    }
    return n;
  }

 private:
  std::deque<Record> ring_;
};

// An opener that hands the family a new `Fake` and lets the test keep a pointer to it (the family owns it).
template <typename Interface, typename Fake>
std::function<std::unique_ptr<Interface>(std::string&)> fake_opener(Fake*& kernel) {
  return [&kernel](std::string&) -> std::unique_ptr<Interface> {
    auto k = std::make_unique<Fake>();
    kernel = k.get();
    return k;
  };
}

// A generic worker named `name` running as `pid` (its start time tells it from a later process under that PID).
inline WorkerInfo make_worker(int pid, const std::string& name, const std::string& app = kWorkerApp) {
  WorkerInfo w;
  w.key = {pid, 1000u + static_cast<std::uint64_t>(pid)};
  w.host_pid = pid;
  w.ns_pids = {pid};
  w.worker_name = name;
  w.name_source = "worker_name";
  w.worker_app = app;
  return w;
}

inline WorkerLabels worker_labels(const std::string& name) { return {name, kWorkerApp}; }

// The processes the test says are running; rescan() hands the family one scan of them, as the agent does.
class FakeDiscovery {
 public:
  explicit FakeDiscovery(agent::ProbeFamily& family) : family_(family) {}

  void start(const WorkerInfo& w) { running_[w.host_pid] = w; }
  void stop(int pid) { running_.erase(pid); }
  WorkerInfo& running(int pid) { return running_.at(pid); }

  void rescan() {
    ScanResult scan;
    for (const auto& [pid, w] : running_) scan.workers.push_back(w);
    const ScanDiff diff = state_.update(std::move(scan));
    family_.update(state_.current(), diff);
  }

 private:
  agent::ProbeFamily& family_;
  std::map<int, WorkerInfo> running_;
  DiscoveryState state_;
};

// <pid>/root is the process's root file system: tests/data/elf, where the synthetic interpreters are (a worker's
// python_path "/fake_gc_nopie" is that file). <pid>/maps when given. Nothing else: to process_running() every
// process here has exited, which only turns the families' attach warnings into debug lines.
class FakeProcRoot {
 public:
  const std::string& path() const { return dir_.path(); }

  void add(int pid, const std::string& maps = "") const {
    const std::filesystem::path proc = std::filesystem::path(dir_.path()) / std::to_string(pid);
    std::filesystem::create_directories(proc);
    std::filesystem::create_directory_symlink(std::string(SP_TEST_DATA_DIR) + "/elf", proc / "root");
    if (!maps.empty()) std::ofstream(proc / "maps") << maps;
  }

 private:
  TempDir dir_{"sp-family-proc"};
};

// A started `Family` over a `Fake` kernel side (which always loads) and a fake /proc, its events recorded, its scans
// run by hand.
template <typename Family, typename Interface, typename Fake>
class FamilyTest : public testing::Test {
 protected:
  FamilyTest() {
    family_.set_sink(&sink_);
    std::string why;
    EXPECT_TRUE(family_.start(why)) << why;
  }

  FakeProcRoot proc_;
  Fake* kernel_ = nullptr;  // owned by family_
  Family family_{proc_.path(), fake_opener<Interface>(kernel_)};
  RecordingSink sink_;
  FakeDiscovery discovery_{family_};
};

// The family's series as exposition text.
inline std::string exposition(const agent::ProbeFamily& family) {
  std::vector<prometheus::MetricFamily> out;
  family.collect(HubSnapshot{}, out);
  return exporter::to_text(out);
}

// The value of one sample (`name{labels}`) in exposition text; "absent" when the text has no such sample.
inline std::string sample(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const auto at = text.find(key);
  if (at == std::string::npos) return "absent";
  const auto from = at + key.size();
  return text.substr(from, text.find('\n', from) - from);
}

// `worker="NAME",worker_app="synapse.app.generic_worker"`, what every per-worker sample's labels start with.
inline std::string label_text(const std::string& worker) {
  return "worker=\"" + worker + "\",worker_app=\"" + kWorkerApp + "\"";
}

// The value of `metric{worker labels<more_labels>}` in exposition text; `more_labels` starts with a comma.
inline std::string worker_sample(const std::string& text, const std::string& metric, const std::string& worker,
                                 const std::string& more_labels = "") {
  return sample(text, metric + "{" + label_text(worker) + more_labels + "}");
}

}  // namespace sp::test
