#include "probes/map_util.h"

namespace sp::bpf {

std::uint64_t recursion_misses(const bpf_object* obj) {
  std::uint64_t total = 0;
  bpf_program* prog = nullptr;
  while ((prog = bpf_object__next_program(obj, prog)) != nullptr) {
    const int fd = bpf_program__fd(prog);
    if (fd < 0) continue;  // not loaded (the other hook variant)
    bpf_prog_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) total += info.recursion_misses;
  }
  return total;
}

std::uint64_t percpu_sum(const bpf_map* map, std::uint32_t idx) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return 0;
  std::vector<std::uint64_t> values(static_cast<std::size_t>(ncpu));
  if (bpf_map_lookup_elem(bpf_map__fd(map), &idx, values.data()) != 0) return 0;
  std::uint64_t sum = 0;
  for (auto v : values) sum += v;
  return sum;
}

}  // namespace sp::bpf
