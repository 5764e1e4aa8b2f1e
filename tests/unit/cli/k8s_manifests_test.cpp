// The Kubernetes manifests in k8s/: every file parses, the profiler containers ask for exactly the capabilities the
// agent needs and are never privileged, their arguments are ones the binary accepts, their ports are the binary's
// default, the probes point at /healthz on a declared port, and the selectors of Services and monitors match the pods.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli/options.h"

namespace fs = std::filesystem;

namespace {

const fs::path kK8s = fs::path(SP_TEST_DATA_DIR) / ".." / ".." / "k8s";

struct Doc {
  std::string file;
  YAML::Node node;
};

std::vector<Doc> all_docs() {
  std::vector<Doc> out;
  for (const auto& e : fs::recursive_directory_iterator(kK8s)) {
    if (e.path().extension() != ".yaml") continue;
    for (const auto& n : YAML::LoadAllFromFile(e.path().string())) {
      if (n.IsDefined() && !n.IsNull()) out.push_back({fs::relative(e.path(), kK8s).string(), n});
    }
  }
  return out;
}

std::set<std::string> strings(const YAML::Node& seq) {
  std::set<std::string> out;
  for (const auto& v : seq) out.insert(v.as<std::string>());
  return out;
}

bool selects(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector || !selector.IsMap() || selector.size() == 0) return false;
  for (const auto& kv : selector) {
    const auto key = kv.first.as<std::string>();
    if (!labels[key] || labels[key].as<std::string>() != kv.second.as<std::string>()) return false;
  }
  return true;
}

}  // namespace

TEST(K8sManifests, EveryFileParsesAndEveryKustomizationResourceExists) {
  auto docs = all_docs();
  ASSERT_GE(docs.size(), 7u);
  for (const auto& d : docs) {
    EXPECT_TRUE(d.node["apiVersion"] && d.node["kind"]) << d.file;
    if (d.node["kind"].as<std::string>() == "Kustomization") {
      const fs::path dir = (kK8s / d.file).parent_path();
      for (const auto& r : d.node["resources"]) {
        EXPECT_TRUE(fs::exists(dir / r.as<std::string>())) << d.file << ": " << r.as<std::string>();
      }
    }
  }
}

TEST(K8sManifests, ProfilerContainersAreLeastPrivilegeAndRunValidCommands) {
  // The binary's own default port: what `run` listens on without --listen.
  const char* argv0[] = {"synapse-profiler"};
  auto defaults = sp::cli::parse_cli(1, argv0);
  ASSERT_TRUE(defaults.options);
  const std::string default_port = defaults.options->listen.substr(defaults.options->listen.rfind(':') + 1);

  std::set<std::string> images;
  int profilers = 0;
  for (const auto& d : all_docs()) {
    const std::string kind = d.node["kind"].as<std::string>();
    if (kind != "DaemonSet" && kind != "StatefulSet" && kind != "Deployment") continue;
    const YAML::Node spec = d.node["spec"]["template"]["spec"];
    std::set<std::string> volumes;
    for (const auto& v : spec["volumes"]) volumes.insert(v["name"].as<std::string>());
    const char* sharing = kind == "DaemonSet" ? "hostPID" : "shareProcessNamespace";
    EXPECT_TRUE(spec[sharing].as<bool>()) << d.file << ": the profiler must see the worker's processes";
    for (const auto& c : spec["containers"]) {
      if (c["name"].as<std::string>() != "profiler") continue;
      ++profilers;
      images.insert(c["image"].as<std::string>());
      const YAML::Node sc = c["securityContext"];
      EXPECT_FALSE(sc["privileged"].as<bool>()) << d.file;
      EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>()) << d.file;
      EXPECT_EQ(strings(sc["capabilities"]["drop"]), (std::set<std::string>{"ALL"})) << d.file;
      // Exactly what the agent needs on this kernel (docs/deploy.md; CapabilitiesIT runs the agent with this set, and
      // without DAC_READ_SEARCH shows a worker's private config unreadable).
      EXPECT_EQ(strings(sc["capabilities"]["add"]),
                (std::set<std::string>{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}))
          << d.file;
      // The arguments are a command line the binary accepts, listening on the declared port.
      std::vector<std::string> args = {"synapse-profiler"};
      for (const auto& a : c["args"]) args.push_back(a.as<std::string>());
      std::vector<const char*> argv;
      for (const auto& a : args) argv.push_back(a.c_str());
      auto parsed = sp::cli::parse_cli(static_cast<int>(argv.size()), argv.data());
      ASSERT_TRUE(parsed.options) << d.file << ": " << parsed.message;
      EXPECT_EQ(parsed.options->command, sp::cli::Command::Run) << d.file;
      const std::string port = parsed.options->listen.substr(parsed.options->listen.rfind(':') + 1);
      EXPECT_EQ(port, default_port) << d.file;
      std::set<std::string> port_names;
      for (const auto& p : c["ports"]) {
        port_names.insert(p["name"].as<std::string>());
        EXPECT_EQ(p["containerPort"].as<std::string>(), port) << d.file;
      }
      // Liveness on /healthz (answered from the start), readiness on /readyz (once the first scan has attached).
      for (const auto& [probe, path] :
           {std::pair{"livenessProbe", "/healthz"}, std::pair{"readinessProbe", "/readyz"}}) {
        EXPECT_EQ(c[probe]["httpGet"]["path"].as<std::string>(), path) << d.file << " " << probe;
        EXPECT_TRUE(port_names.count(c[probe]["httpGet"]["port"].as<std::string>())) << d.file << " " << probe;
      }
      std::map<std::string, std::string> mounted;  // mount path -> volume name
      for (const auto& m : c["volumeMounts"]) {
        EXPECT_TRUE(volumes.count(m["name"].as<std::string>())) << d.file;
        EXPECT_TRUE(m["readOnly"].as<bool>()) << d.file << ": host paths are mounted read-only";
        mounted[m["mountPath"].as<std::string>()] = m["name"].as<std::string>();
      }
      if (kind == "DaemonSet") {
        // Node-wide pod names: the kubelet's log directories, the same host path where the options look for them.
        for (const auto& path : {parsed.options->pod_log_dirs.pods, parsed.options->pod_log_dirs.containers}) {
          ASSERT_TRUE(mounted.count(path)) << d.file << ": " << path << " not mounted";
          bool from_host = false;
          for (const auto& v : spec["volumes"]) {
            if (v["name"].as<std::string>() == mounted[path] && v["hostPath"]) {
              from_host = v["hostPath"]["path"].as<std::string>() == path;
            }
          }
          EXPECT_TRUE(from_host) << d.file << ": " << path << " is not the host's";
        }
      }
    }
  }
  EXPECT_EQ(profilers, 2) << "the sidecar example and the DaemonSet";
  EXPECT_EQ(images.size(), 1u) << "one image for both modes";
}

TEST(K8sManifests, ServicesAndMonitorsSelectThePodsAndPortsThatExist) {
  auto docs = all_docs();
  auto find = [&](const std::string& kind) -> std::vector<YAML::Node> {
    std::vector<YAML::Node> out;
    for (const auto& d : docs) {
      if (d.node["kind"].as<std::string>() == kind) out.push_back(d.node);
    }
    return out;
  };
  auto ds = find("DaemonSet");
  auto sts = find("StatefulSet");
  ASSERT_EQ(ds.size(), 1u);
  ASSERT_EQ(sts.size(), 1u);
  const YAML::Node ds_labels = ds[0]["spec"]["template"]["metadata"]["labels"];
  EXPECT_TRUE(selects(ds[0]["spec"]["selector"]["matchLabels"], ds_labels));
  for (const auto& svc : find("Service")) {
    EXPECT_TRUE(selects(svc["spec"]["selector"], ds_labels));
    for (const auto& p : svc["spec"]["ports"]) EXPECT_EQ(p["targetPort"].as<std::string>(), "metrics");
  }
  for (const auto& sm : find("ServiceMonitor")) {
    bool selects_a_service = false;
    for (const auto& svc : find("Service"))
      selects_a_service |= selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]);
    EXPECT_TRUE(selects_a_service);
    for (const auto& e : sm["spec"]["endpoints"]) EXPECT_EQ(e["path"].as<std::string>(), "/metrics");
  }
  const YAML::Node pod_labels = sts[0]["spec"]["template"]["metadata"]["labels"];
  for (const auto& pm : find("PodMonitor")) {
    EXPECT_TRUE(selects(pm["spec"]["selector"]["matchLabels"], pod_labels));
    for (const auto& e : pm["spec"]["podMetricsEndpoints"]) {
      bool declared = false;
      for (const auto& c : sts[0]["spec"]["template"]["spec"]["containers"]) {
        for (const auto& p : c["ports"]) declared |= p["name"].as<std::string>() == e["port"].as<std::string>();
      }
      EXPECT_TRUE(declared) << e["port"].as<std::string>();
    }
  }
}
