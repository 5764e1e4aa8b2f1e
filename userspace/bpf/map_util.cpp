#include "bpf/map_util.h"

namespace sp::bpf {

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

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
