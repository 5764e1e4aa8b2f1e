#include "core/proc/pod_identity.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <vector>

namespace sp {
namespace {

constexpr std::size_t kMaxCgroupLine = 4096;  // PATH_MAX: the kernel never prints a longer cgroup path
constexpr std::size_t kContainerIdLength = 64;
constexpr std::array<std::string_view, 3> kRuntimePrefixes = {"cri-containerd-", "crio-", "docker-"};

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool all_hex(std::string_view s) {
  for (char c : s) {
    if (!is_hex(c)) return false;
  }
  return true;
}

// A pod UID: a UUID (8-4-4-4-12) or, for static pods, the 32 hex digits of their config hash. Returned lowercase.
std::optional<std::string> normalise_uid(std::string_view s) {
  if (s.size() == 32 && all_hex(s)) return lower(s);
  if (s.size() != 36) return std::nullopt;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return std::nullopt;
  }
  return lower(s);
}

// The pod's own cgroup. systemd: "kubepods[-qos]-pod<uid_>.slice" (kind: "kubelet-kubepods-..."); cgroupfs:
// "pod<uid>" below kubepods, its QoS directory, or (seen from another cgroup namespace) "..".
std::optional<std::string> pod_uid_of(std::string_view component, std::string_view parent, bool has_parent) {
  constexpr std::string_view kSlice = ".slice";
  if (component.ends_with(kSlice)) {
    std::string_view stem = component.substr(0, component.size() - kSlice.size());
    const auto at = stem.rfind("-pod");
    if (at == std::string_view::npos) return std::nullopt;
    const std::string_view prefix = stem.substr(0, at);
    const bool kubepods = prefix == "kubepods" || prefix.starts_with("kubepods-") ||
                          prefix.find("-kubepods") != std::string_view::npos;
    if (!kubepods) return std::nullopt;
    std::string uid(stem.substr(at + 4));
    for (char& c : uid) {
      if (c == '_') c = '-';  // systemd reserves '-' for the slice hierarchy
    }
    return normalise_uid(uid);
  }
  if (!component.starts_with("pod")) return std::nullopt;
  if (has_parent && parent != "kubepods" && parent != "burstable" && parent != "besteffort" && parent != "..") {
    return std::nullopt;
  }
  return normalise_uid(component.substr(3));
}

// The container's cgroup: "<runtime>-<id>.scope" (systemd), "<id>" or "<runtime>-<id>" (cgroupfs).
std::optional<std::string> container_id_of(std::string_view component) {
  constexpr std::string_view kScope = ".scope";
  const bool scope = component.ends_with(kScope);
  if (scope) component.remove_suffix(kScope.size());
  bool prefixed = false;
  for (std::string_view prefix : kRuntimePrefixes) {
    if (component.starts_with(prefix)) {
      component.remove_prefix(prefix.size());
      prefixed = true;
      break;
    }
  }
  if (scope && !prefixed) return std::nullopt;
  if (component.size() != kContainerIdLength || !all_hex(component)) return std::nullopt;  // also crio-conmon-<id>
  return lower(component);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t begin = 0;
  for (;;) {
    const auto end = s.find(sep, begin);
    parts.push_back(s.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (end == std::string_view::npos) break;
    begin = end + 1;
  }
  return parts;
}

// Entry names of a directory, at most `max`. `nofollow`: the directory itself must not be a symlink.
std::vector<std::string> list_names(const std::string& path, std::size_t max, bool nofollow) {
  std::vector<std::string> names;
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
  if (fd < 0) return names;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return names;
  }
  while (names.size() < max) {
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) break;
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(dir);
  return names;
}

}  // namespace

bool is_dns1123_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  for (char c : s) {
    if (!alnum(c) && c != '-') return false;
  }
  return alnum(s.front()) && alnum(s.back());
}

bool is_dns1123_subdomain(std::string_view s) {
  if (s.empty() || s.size() > kMaxPodLabelBytes) return false;
  for (std::string_view part : split(s, '.')) {
    if (!is_dns1123_label(part)) return false;
  }
  return true;
}

PodLabels pod_labels(const PodIdentity& id) {
  PodLabels l;
  l.pod = id.pod_name.empty() ? id.pod_uid : id.pod_name;
  l.namespace_name = id.namespace_name;
  l.container = id.container_name.empty() ? id.container_id : id.container_name;
  return l;
}

std::optional<PodIdentity> pod_from_cgroup_path(std::string_view path) {
  if (path.size() > kMaxCgroupLine) return std::nullopt;
  std::vector<std::string_view> components;
  for (std::string_view c : split(path, '/')) {
    if (!c.empty()) components.push_back(c);
  }
  // Innermost match first: a process in a sub-cgroup of its container still belongs to that container.
  for (std::size_t i = components.size(); i-- > 1;) {
    const auto container = container_id_of(components[i]);
    if (!container) continue;
    const bool has_parent = i >= 2;
    const auto uid = pod_uid_of(components[i - 1], has_parent ? components[i - 2] : std::string_view(), has_parent);
    if (!uid) continue;
    PodIdentity id;
    id.pod_uid = *uid;
    id.container_id = *container;
    return id;
  }
  return std::nullopt;
}

std::optional<PodIdentity> pod_from_cgroup_file(std::string_view text) {
  std::vector<std::string_view> v1;
  for (std::string_view line : split(text, '\n')) {
    if (line.empty() || line.size() > kMaxCgroupLine) continue;
    const auto first = line.find(':');
    if (first == std::string_view::npos) continue;
    const auto second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view hierarchy = line.substr(0, first);
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string_view path = line.substr(second + 1);
    if (hierarchy == "0" && controllers.empty()) {
      if (auto id = pod_from_cgroup_path(path)) return id;
    } else {
      v1.push_back(path);
    }
  }
  for (std::string_view path : v1) {
    if (auto id = pod_from_cgroup_path(path)) return id;
  }
  return std::nullopt;
}

PodNameIndex PodNameIndex::load(const PodLogDirs& dirs) {
  PodNameIndex index;
  index.pods_dir_ = dirs.pods;
  if (!dirs.pods.empty()) {
    for (const auto& name : list_names(dirs.pods, kMaxEntries, false)) {
      const auto parts = split(name, '_');  // '_' appears in none of namespace, pod name and UID
      if (parts.size() != 3 || !is_dns1123_label(parts[0]) || !is_dns1123_subdomain(parts[1])) continue;
      const auto uid = normalise_uid(parts[2]);
      if (!uid) continue;
      index.pods_.try_emplace(*uid, PodName{std::string(parts[0]), std::string(parts[1]), name});
    }
  }
  if (!dirs.containers.empty()) {
    constexpr std::string_view kLog = ".log";
    for (const auto& name : list_names(dirs.containers, kMaxEntries, false)) {
      std::string_view stem = name;
      if (!stem.ends_with(kLog)) continue;
      stem.remove_suffix(kLog.size());
      if (stem.size() < kContainerIdLength + 2 || stem[stem.size() - kContainerIdLength - 1] != '-') continue;
      const std::string_view id = stem.substr(stem.size() - kContainerIdLength);
      if (!all_hex(id)) continue;
      const auto parts = split(stem.substr(0, stem.size() - kContainerIdLength - 1), '_');
      if (parts.size() != 3 || !is_dns1123_subdomain(parts[0]) || !is_dns1123_label(parts[1]) ||
          !is_dns1123_label(parts[2])) {
        continue;
      }
      index.containers_.try_emplace(lower(id),
                                    ContainerName{std::string(parts[1]), std::string(parts[0]), std::string(parts[2])});
    }
  }
  return index;
}

void PodNameIndex::resolve(PodIdentity& id) const {
  const auto pod = pods_.find(id.pod_uid);
  if (pod != pods_.end()) {
    id.namespace_name = pod->second.namespace_name;
    id.pod_name = pod->second.pod_name;
  }
  const auto container = containers_.find(id.container_id);
  if (container != containers_.end()) {
    const ContainerName& c = container->second;
    if (pod == pods_.end()) {
      id.namespace_name = c.namespace_name;
      id.pod_name = c.pod_name;
      id.container_name = c.container_name;
    } else if (c.namespace_name == id.namespace_name && c.pod_name == id.pod_name) {
      id.container_name = c.container_name;  // an entry naming another pod is not trusted for this one
    }
  }
  if (id.container_name.empty() && pod != pods_.end()) {
    // Without the container symlink: a pod directory holding exactly one container's directory names it (the
    // kubelet creates each container's directory before starting it, so ours is among them).
    constexpr std::size_t kMaxContainers = 64;
    const auto entries = list_names(pods_dir_ + "/" + pod->second.dir, kMaxContainers, true);
    std::vector<std::string> names;
    for (const auto& name : entries) {
      if (is_dns1123_label(name)) names.push_back(name);
    }
    if (entries.size() < kMaxContainers && names.size() == 1) id.container_name = names.front();
  }
}

}  // namespace sp
