// libFuzzer target for the /proc parsers (core/proc/proc_parse.h): every file they read belongs to another process (or is
// served by the kernel on its behalf, like a comm with parentheses and spaces), so each parser gets every input.
// Properties: no crash; split arguments hold no NUL; stat's comm is at most 64 bytes and its state one printable
// character; TCP ports stay in 0..65535; parsed integers print back as the digits they came from; a pod found in a
// cgroup file has a UID of 32 or 36 characters and a container id of 64 lowercase hex digits.
// Built as a real fuzzer with -DSP_FUZZ=ON (clang), otherwise as sp_fuzz_proc_regress over tests/data/fuzz/proc and
// the /proc fixture trees of the discovery tests.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/proc/pod_identity.h"
#include "core/proc/proc_parse.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s: %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  for (const auto& arg : sp::proc::split_cmdline(input)) {
    if (arg.find('\0') != std::string::npos) fail("NUL inside an argument", arg);
  }
  if (auto st = sp::proc::parse_stat(input)) {
    if (st->comm.size() > 64) fail("comm longer than the kernel allows", st->comm.substr(0, 80));
    if (!std::isalpha(static_cast<unsigned char>(st->state))) fail("state is not a letter", std::to_string(st->state));
  }
  for (int pid : sp::proc::parse_nspid(input)) {
    if (pid <= 0) fail("non-positive namespaced pid", std::to_string(pid));
  }
  (void)sp::proc::environ_value(input, "SUPERVISOR_PROCESS_NAME");
  for (const auto& m : sp::proc::parse_maps(input)) {
    if (m.path.find('\n') != std::string::npos) fail("newline inside a mapped path", m.path);
  }
  (void)sp::proc::strip_deleted(input);
  for (const auto& s : sp::proc::parse_net_tcp(input)) {
    if (s.local_port < 0 || s.local_port > 65535 || s.remote_port < 0 || s.remote_port > 65535) {
      fail("TCP port out of range", std::to_string(s.local_port) + " " + std::to_string(s.remote_port));
    }
    (void)sp::proc::format_ip(s.local_addr);
    (void)sp::proc::is_loopback(s.remote_addr);
  }
  if (auto pod = sp::pod_from_cgroup_file(input)) {
    if (pod->pod_uid.size() != 32 && pod->pod_uid.size() != 36) fail("pod UID of odd length", pod->pod_uid);
    if (pod->container_id.size() != 64 ||
        pod->container_id.find_first_not_of("0123456789abcdef") != std::string::npos) {
      fail("container id is not 64 lowercase hex digits", pod->container_id);
    }
    const auto labels = sp::pod_labels(*pod);
    if (labels.pod.size() > sp::kMaxPodLabelBytes || labels.container.size() > sp::kMaxPodLabelBytes) {
      fail("pod label too long", labels.pod);
    }
  }
  (void)sp::proc::socket_inode(input);
  (void)sp::proc::namespace_inode(input, "pid");
  (void)sp::proc::basename(input);
  if (auto v = sp::proc::parse_u64(input)) {
    const std::string printed = std::to_string(*v);
    std::string_view digits = input;
    while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
    if (printed != digits) fail("parse_u64 does not round-trip", printed + " from " + std::string(input));
  }
  return 0;
}
