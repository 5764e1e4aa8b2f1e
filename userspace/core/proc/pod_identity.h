// Pod identity of a process in node-wide (DaemonSet, hostPID) mode: which Kubernetes pod and container it runs in,
// read from its /proc/PID/cgroup, and the human names of both from the kubelet's log directories.
//
// The cgroup path is recognised by its suffix only: the prefix depends on the cgroup driver, the node's slice layout
// (kind nests everything under kubelet.slice) and on the reader's cgroup namespace (paths of other pods then start
// with "/../.."). Two layouts:
//   cgroupfs driver  .../kubepods[/burstable|/besteffort]/pod<uid>/[<runtime>-]<container-id>
//   systemd driver   .../kubepods[-burstable|-besteffort]-pod<uid with '_' for '-'>.slice/<runtime>-<id>.scope
// with <runtime> one of cri-containerd, crio, docker. The pod UID is returned with dashes, the container id as 64
// lowercase hex digits. Anything after the container's own cgroup (a process in a sub-cgroup) still belongs to it.
//
// Names come from directories the kubelet writes on every node:
//   <pod-log-dir>/<namespace>_<pod-name>_<pod-uid>/<container-name>/<restart>.log       (default /var/log/pods)
//   <container-log-dir>/<pod-name>_<namespace>_<container-name>-<container-id>.log      (default /var/log/containers)
// Only directory entry NAMES are read (no file contents, no symlink is followed), and every name must be a valid
// Kubernetes name (DNS-1123), so a hostile entry can neither smuggle odd bytes into a label nor make one longer than
// 253 bytes. What cannot be resolved falls back to the identifiers: pod = the pod UID, container = the container id,
// namespace = "".
#pragma once

#include <compare>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sp {

struct PodIdentity {
  std::string pod_uid;       // 8-4-4-4-12 hex with dashes (or the 32 hex digits of a static pod's config hash)
  std::string container_id;  // 64 lowercase hex digits
  std::string namespace_name;  // from the log directories; empty when unresolved
  std::string pod_name;        // likewise
  std::string container_name;  // likewise
  auto operator<=>(const PodIdentity&) const = default;
};

// The labels every series of a worker in a pod carries: names where known, the identifiers otherwise.
struct PodLabels {
  std::string pod;
  std::string namespace_name;
  std::string container;
  auto operator<=>(const PodLabels&) const = default;
};
PodLabels pod_labels(const PodIdentity& id);

// Longest label value this module ever produces (a DNS-1123 subdomain: the pod name).
inline constexpr std::size_t kMaxPodLabelBytes = 253;

// One cgroup path ("/kubepods.slice/.../cri-containerd-<id>.scope"): the pod and container it names, if any.
std::optional<PodIdentity> pod_from_cgroup_path(std::string_view path);

// The text of /proc/PID/cgroup: the cgroup v2 line ("0::/path") first, then the v1 lines in order. Lines longer
// than PATH_MAX and malformed lines are skipped.
std::optional<PodIdentity> pod_from_cgroup_file(std::string_view text);

// Names from the kubelet's log directories, listed once per scan.
struct PodLogDirs {
  std::string pods = "/var/log/pods";
  std::string containers = "/var/log/containers";
};

class PodNameIndex {
 public:
  // Lists both directories (at most kMaxEntries entries each; a missing or unreadable directory just resolves
  // nothing). Never throws on bad entries: they are skipped.
  static PodNameIndex load(const PodLogDirs& dirs);

  // Fills namespace_name, pod_name and container_name of `id` where the directories name them.
  void resolve(PodIdentity& id) const;

  static constexpr std::size_t kMaxEntries = 100'000;

 private:
  struct PodName {
    std::string namespace_name, pod_name, dir;
  };
  struct ContainerName {
    std::string namespace_name, pod_name, container_name;
  };
  std::string pods_dir_;
  std::map<std::string, PodName> pods_;              // pod UID -> names
  std::map<std::string, ContainerName> containers_;  // container id -> names
};

// Kubernetes name rules, exposed for tests: a DNS-1123 label (namespace, container: [a-z0-9-], at most 63, starting
// and ending alphanumeric) and subdomain (pod: labels joined by '.', at most 253).
bool is_dns1123_label(std::string_view s);
bool is_dns1123_subdomain(std::string_view s);

}  // namespace sp
