// Pod identity in node-wide mode: cgroup files of processes in pods (tests/data/pod, one per runtime and driver),
// names from a kubelet-style log directory built at test time (odd entry names need a real directory), discovery
// over a fake /proc tree with a cgroup file, and the labels every exported series then carries.
#include "core/proc/pod_identity.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/proc/discovery.h"
#include "core/scrape/prom_text.h"
#include "exporter/metric_builders.h"
#include "exporter/passthrough.h"
#include "exporter/probe_metrics.h"
#include "exporter/self_metrics.h"

namespace sp {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kUid = "0a1b2c3d-4e5f-4789-abcd-ef0123456789";
constexpr const char* kId = "3f9c2b7e1d4a6c8b0e2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b";

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<PodIdentity> from_fixture(const std::string& name) {
  const fs::path p = fs::path(SP_TEST_DATA_DIR) / "pod" / name;
  EXPECT_TRUE(fs::exists(p)) << p;
  return pod_from_cgroup_file(read(p));
}

TEST(PodIdentity, RecognisesEveryDriverAndRuntimeBySuffix) {
  for (const char* name : {"containerd_systemd_v2", "docker_cgroupfs_v1", "crio_systemd_guaranteed", "kind_nested",
                           "other_cgroupns", "docker_systemd_subcgroup"}) {
    const auto id = from_fixture(name);
    ASSERT_TRUE(id) << name;
    EXPECT_EQ(id->pod_uid, kUid) << name;  // systemd's underscores back to dashes
    EXPECT_EQ(id->container_id, kId) << name;
    EXPECT_EQ(id->pod_name, "") << name;  // names only come from the log directories
  }
  const auto static_pod = from_fixture("static_pod_cgroupfs");
  ASSERT_TRUE(static_pod);
  EXPECT_EQ(static_pod->pod_uid, "33d556edd3ae8ef21980288cef77ae8b");
}

TEST(PodIdentity, OtherCgroupsAreNoPod) {
  for (const char* name : {"baremetal", "docker_not_kubernetes", "crio_conmon", "pod_cgroup_only",
                           "not_kubepods_pod_slice", "bad_uid"}) {
    EXPECT_FALSE(from_fixture(name)) << name;
  }
  EXPECT_FALSE(pod_from_cgroup_file(""));
  EXPECT_FALSE(pod_from_cgroup_file("0::/\n"));
  // Only "0::" is the v2 line: a v1 hierarchy numbered 0 with controllers is just another v1 line.
  EXPECT_FALSE(pod_from_cgroup_path("/kubepods/burstable/pod" + std::string(kUid)));
  EXPECT_FALSE(pod_from_cgroup_path("/kubepods/burstable/pod" + std::string(kUid) + "/" + std::string(63, 'a')));
  // A cgroupfs pod directory must sit below kubepods or its QoS class (or be seen from another cgroup namespace).
  EXPECT_FALSE(pod_from_cgroup_path("/somewhere/pod" + std::string(kUid) + "/" + kId));
  EXPECT_TRUE(pod_from_cgroup_path("/pod" + std::string(kUid) + "/" + kId));
}

TEST(PodIdentity, NormalisesCaseAndPrefersTheUnifiedHierarchy) {
  std::string upper_id(kId);
  for (char& c : upper_id) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const auto id = pod_from_cgroup_path("/kubepods/pod0A1B2C3D-4E5F-4789-ABCD-EF0123456789/" + upper_id);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->pod_uid, kUid);
  EXPECT_EQ(id->container_id, kId);
  // Hybrid hosts: a v1 line naming another pod does not win over the v2 line.
  const std::string other_uid = "11111111-2222-4333-8444-555555555555";
  const auto hybrid = pod_from_cgroup_file("3:pids:/kubepods/pod" + other_uid + "/" + std::string(64, 'c') +
                                           "\n0::/kubepods/besteffort/pod" + kUid + "/" + kId + "\n");
  ASSERT_TRUE(hybrid);
  EXPECT_EQ(hybrid->pod_uid, kUid);
}

TEST(PodIdentity, HostileCgroupTextNeverCrashesOrYieldsLongLabels) {
  // The fuzz corpus's hostile entry: repeated pod-like names, 3000 "..", empty fields, a non-hex id, conmon.
  EXPECT_FALSE(pod_from_cgroup_file(read(fs::path(SP_TEST_DATA_DIR) / "fuzz" / "proc" / "cgroup_hostile")));
  // A valid line after an overlong one is still found; the overlong one (longer than PATH_MAX) is skipped.
  std::string text = "0::/" + std::string(100'000, 'x') + "/kubepods/pod" + kUid + "/" + kId + "\n";
  EXPECT_FALSE(pod_from_cgroup_file(text));
  text += "5:memory:/kubepods/pod" + std::string(kUid) + "/" + kId + "\n";
  const auto id = pod_from_cgroup_file(text);
  ASSERT_TRUE(id);
  const PodLabels l = pod_labels(*id);
  EXPECT_EQ(l.pod, kUid);
  EXPECT_EQ(l.container, kId);
  EXPECT_EQ(l.namespace_name, "");
  // Bytes the kernel never prints in a path.
  EXPECT_FALSE(pod_from_cgroup_file(std::string("0::/kubepods/pod\0\xff\n", 19) + std::string(5000, '/')));
}

TEST(PodIdentity, KubernetesNameRules) {
  EXPECT_TRUE(is_dns1123_label("synapse-worker-0"));
  EXPECT_FALSE(is_dns1123_label("-a"));
  EXPECT_FALSE(is_dns1123_label("a-"));
  EXPECT_FALSE(is_dns1123_label("Synapse"));
  EXPECT_FALSE(is_dns1123_label(std::string(64, 'a')));
  EXPECT_TRUE(is_dns1123_label(std::string(63, 'a')));
  EXPECT_TRUE(is_dns1123_subdomain("synapse.example-1.x"));
  EXPECT_FALSE(is_dns1123_subdomain("a..b"));
  EXPECT_FALSE(is_dns1123_subdomain("a\"b"));
  EXPECT_FALSE(is_dns1123_subdomain(std::string(254, 'a')));
}

// A kubelet-style log tree in a fresh temporary directory.
class LogDirs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("sp-podlogs-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "pods");
    fs::create_directories(root_ / "containers");
    dirs_.pods = (root_ / "pods").string();
    dirs_.containers = (root_ / "containers").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  void pod_dir(const std::string& name, const std::vector<std::string>& containers) {
    fs::create_directories(root_ / "pods" / name);
    for (const auto& c : containers) {
      fs::create_directories(root_ / "pods" / name / c);
      std::ofstream(root_ / "pods" / name / c / "0.log") << "";
    }
  }
  void container_link(const std::string& name) {
    fs::create_symlink("/var/log/pods/x/y/0.log", root_ / "containers" / name);  // dangles, like on a host copy
  }
  PodIdentity resolved() const {
    PodIdentity id;
    id.pod_uid = kUid;
    id.container_id = kId;
    PodNameIndex::load(dirs_).resolve(id);
    return id;
  }

  fs::path root_;
  PodLogDirs dirs_;
};

TEST_F(LogDirs, NamesFromPodDirectoryAndContainerLink) {
  pod_dir(std::string("matrix_synapse-worker-0_") + kUid, {"synapse", "profiler"});
  pod_dir("matrix_other-0_11111111-2222-4333-8444-555555555555", {"synapse"});
  container_link(std::string("synapse-worker-0_matrix_synapse-") + kId + ".log");
  container_link("synapse-worker-0_matrix_profiler-" + std::string(64, 'e') + ".log");
  const PodIdentity id = resolved();
  EXPECT_EQ(id.namespace_name, "matrix");
  EXPECT_EQ(id.pod_name, "synapse-worker-0");
  EXPECT_EQ(id.container_name, "synapse");
  const PodLabels l = pod_labels(id);
  EXPECT_EQ(l.pod, "synapse-worker-0");
  EXPECT_EQ(l.namespace_name, "matrix");
  EXPECT_EQ(l.container, "synapse");
}

TEST_F(LogDirs, OnlyContainerDirectoryOfThePodNamesTheContainer) {
  pod_dir(std::string("matrix_synapse-worker-0_") + kUid, {"synapse"});
  EXPECT_EQ(resolved().container_name, "synapse");
  // Two containers and no link: which one is ours is unknown, so the id stays.
  pod_dir(std::string("matrix_synapse-worker-0_") + kUid, {"synapse", "init-config"});
  const PodIdentity id = resolved();
  EXPECT_EQ(id.pod_name, "synapse-worker-0");
  EXPECT_EQ(id.container_name, "");
  EXPECT_EQ(pod_labels(id).container, kId);
}

TEST_F(LogDirs, ContainerLinkAloneNamesAll) {
  container_link(std::string("synapse-worker-0_matrix_synapse-") + kId + ".log");
  const PodIdentity id = resolved();
  EXPECT_EQ(id.namespace_name, "matrix");
  EXPECT_EQ(id.pod_name, "synapse-worker-0");
  EXPECT_EQ(id.container_name, "synapse");
}

TEST_F(LogDirs, MissingDirectoriesFallBackToIdentifiers) {
  dirs_.pods = (root_ / "nope").string();
  dirs_.containers = "";
  const PodLabels l = pod_labels(resolved());
  EXPECT_EQ(l.pod, kUid);
  EXPECT_EQ(l.namespace_name, "");
  EXPECT_EQ(l.container, kId);
}

TEST_F(LogDirs, OddEntryNamesAreIgnored) {
  const std::string uid = kUid;
  for (const std::string& bad : {"matrix_Synapse_" + uid, "matrix_syn\"apse_" + uid, "matrix_syn\napse_" + uid,
                                 "ma_trix_synapse_" + uid, "matrix_synapse_" + uid + "_x", "_synapse_" + uid,
                                 "matrix__" + uid, "matrix_" + std::string(200, 'a') + "_" + uid,
                                 std::string("matrix_syn\xff" "apse_") + uid, "matrix_a..b_" + uid}) {
    pod_dir(bad, {"synapse"});
  }
  container_link("p_matrix_bad\"name-" + std::string(kId) + ".log");
  container_link("p_matrix_" + std::string(64, 'c') + "-" + kId + ".log");
  container_link("p_matrix_c-" + std::string(kId) + ".txt");
  const PodIdentity id = resolved();
  EXPECT_EQ(id.pod_name, "");
  EXPECT_EQ(id.namespace_name, "");
  EXPECT_EQ(id.container_name, "");
  const PodLabels l = pod_labels(id);
  EXPECT_LE(l.pod.size(), kMaxPodLabelBytes);
  EXPECT_EQ(l.pod, kUid);
  EXPECT_EQ(l.container, kId);
}

TEST_F(LogDirs, ContainerLinkOfAnotherPodIsNotTrusted) {
  pod_dir(std::string("matrix_synapse-worker-0_") + kUid, {"synapse", "profiler"});
  container_link(std::string("someone-else_default_evil-") + kId + ".log");
  const PodIdentity id = resolved();
  EXPECT_EQ(id.pod_name, "synapse-worker-0");
  EXPECT_EQ(id.container_name, "");
}

// Discovery over a copy of a fixture process with a cgroup file added.
TEST_F(LogDirs, DiscoveryAttachesThePodToTheWorker) {
  const fs::path proc = root_ / "proc";
  fs::copy(fs::path(SP_TEST_DATA_DIR) / "proc" / "baremetal", proc,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  fs::copy_file(fs::path(SP_TEST_DATA_DIR) / "pod" / "containerd_systemd_v2", proc / "1100" / "cgroup");
  pod_dir(std::string("matrix_synapse-worker-0_") + kUid, {"synapse"});
  DiscoveryOptions options;
  options.proc_root = proc.string();
  options.pod_log_dirs = dirs_;
  const ScanResult result = scan(options);
  bool seen = false;
  for (const auto& w : result.workers) {
    if (w.host_pid != 1100) {
      EXPECT_FALSE(w.pod) << w.worker_name;  // no cgroup file: bare metal, unchanged
      EXPECT_FALSE(labels_of(w).pod);
      continue;
    }
    seen = true;
    ASSERT_TRUE(w.pod);
    EXPECT_EQ(w.pod->pod_uid, kUid);
    EXPECT_EQ(w.pod->container_id, kId);
    const WorkerLabels l = labels_of(w);
    ASSERT_TRUE(l.pod);
    EXPECT_EQ(l.pod->pod, "synapse-worker-0");
    EXPECT_EQ(l.pod->namespace_name, "matrix");
    EXPECT_EQ(l.pod->container, "synapse");
  }
  EXPECT_TRUE(seen);
}

WorkerInfo pod_worker(bool names) {
  WorkerInfo w;
  w.host_pid = 4242;
  w.worker_name = "synchrotron1";
  w.worker_app = "synapse.app.generic_worker";
  PodIdentity id;
  id.pod_uid = kUid;
  id.container_id = kId;
  if (names) {
    id.namespace_name = "matrix";
    id.pod_name = "synapse-worker-0";
    id.container_name = "synapse";
  }
  w.pod = id;
  return w;
}

TEST(PodLabelsExport, InfoSeriesCarriesIdentifiersAndLabels) {
  exporter::SelfSnapshot snap;
  snap.version = "1";
  WorkerInfo bare;
  bare.host_pid = 7;
  bare.worker_name = "master";
  bare.worker_app = "synapse.app.homeserver";
  snap.workers = {pod_worker(false), bare};
  const std::string text = exporter::to_text(exporter::self_metrics(snap));
  const std::string expected = std::string("synapse_profiler_worker_info{worker=\"synchrotron1\",worker_app=\"") +
                               "synapse.app.generic_worker\",pod=\"" + kUid + "\",namespace=\"\",container=\"" + kId +
                               "\",pid=\"4242\",metrics_url=\"\",pod_uid=\"" + kUid + "\",container_id=\"" + kId +
                               "\"} 1\n";
  EXPECT_THAT(text, HasSubstr(expected));
  // Bare metal: exactly the labels it always had.
  EXPECT_THAT(text, HasSubstr("synapse_profiler_worker_info{worker=\"master\",worker_app=\"synapse.app.homeserver\","
                              "pid=\"7\",metrics_url=\"\"} 1\n"));
}

TEST(PodLabelsExport, ProbeAndPassThroughSeriesCarryPodLabels) {
  const WorkerLabels labels = labels_of(pod_worker(true));
  GcSnapshot gc;
  GcSeries s;
  s.pauses.record(1'000'000);
  gc.series[{labels, 0}] = s;
  gc.series[{{"master", "synapse.app.homeserver"}, 0}] = s;
  const std::string gc_text = exporter::to_text(exporter::gc_metrics(gc));
  EXPECT_THAT(gc_text, HasSubstr("synapse_profiler_gc_pause_seconds_count{worker=\"synchrotron1\",worker_app=\"synapse."
                                 "app.generic_worker\",pod=\"synapse-worker-0\",namespace=\"matrix\",container="
                                 "\"synapse\",generation=\"0\"} 1\n"));
  EXPECT_THAT(gc_text, HasSubstr("synapse_profiler_gc_pause_seconds_count{worker=\"master\",worker_app=\"synapse.app."
                                 "homeserver\",generation=\"0\"} 1\n"));

  auto parsed = prom::parse_prometheus_text(
      "# TYPE synapse_http_requests_total counter\nsynapse_http_requests_total{pod=\"inner\",method=\"GET\"} 3\n");
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  ScrapeResult r;
  r.up = true;
  r.worker_app = labels.worker_app;
  r.pod = labels.pod;
  r.families = std::make_shared<const std::vector<prom::Family>>(std::move(parsed.families));
  std::map<std::string, ScrapeResult> latest{{"synchrotron1", r}};
  const std::string pt = exporter::to_text(exporter::passthrough_metrics(latest, {}));
  // A scraped label that clashes with one we add is kept as exported_<name>.
  EXPECT_THAT(pt, HasSubstr("synapse_http_requests_total{worker=\"synchrotron1\",worker_app=\"synapse.app.generic_"
                            "worker\",pod=\"synapse-worker-0\",namespace=\"matrix\",container=\"synapse\","
                            "exported_pod=\"inner\",method=\"GET\"} 3\n"));
  const std::string up = exporter::to_text(exporter::scrape_status_metrics(latest));
  EXPECT_THAT(up, HasSubstr("synapse_profiler_synapse_up{worker=\"synchrotron1\",worker_app=\"synapse.app.generic_"
                            "worker\",pod=\"synapse-worker-0\",namespace=\"matrix\",container=\"synapse\"} 1\n"));
  // Without a pod, a scraped `pod` label is left alone (bare-metal output unchanged).
  latest["synchrotron1"].pod.reset();
  EXPECT_THAT(exporter::to_text(exporter::passthrough_metrics(latest, {})),
              HasSubstr("synapse_http_requests_total{worker=\"synchrotron1\",worker_app=\"synapse.app.generic_worker\","
                        "pod=\"inner\",method=\"GET\"} 3\n"));
}

}  // namespace
}  // namespace sp
