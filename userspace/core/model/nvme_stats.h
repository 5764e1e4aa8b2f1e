// NVMe commands as the nvme driver's tracepoints report them (bpf/nvme.bpf.c), decoded into labels: queue, opcode
// name and completion status name, per disk. Pure: the probe hands over the kernel's (key, histogram) pairs and this
// module names them, so every decoding rule is unit-tested with synthetic keys.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model/latency_histogram.h"
#include "nvme.h"

namespace sp {

// Opcode names of the NVMe base and NVM command set specifications. Queue 0 is the admin queue, whose opcodes mean
// other things. Unknown opcodes are named by their hex value ("0x7f", "admin_0xc1").
std::string nvme_opcode_name(std::uint16_t qid, std::uint8_t opcode);

// The driver's status word (the completion's status field without its phase bit): "success", or the status code
// type and code by name ("lba_out_of_range", "unrecovered_read_error", "host_path_error"), else "sct<N>_0x<SC>".
// The More, Do-Not-Retry and Command-Retry-Delay bits do not change the name.
std::string nvme_status_name(std::uint16_t status);

struct NvmeKey {
  std::string device;  // disk name; "controller" for admin commands
  std::string queue;   // "0" (admin), "1", ...
  std::string opcode;
  std::string status;
  auto operator<=>(const NvmeKey&) const = default;
};

struct NvmeSeries {
  IoHistogram latency;  // setup -> completion
  void add(const NvmeSeries& o) { latency.add(o.latency); }
};

struct NvmeSnapshot {
  bool active = false;     // the probes are attached
  std::string why_not;     // when !active: what is missing
  std::string hooks;       // when active
  std::map<NvmeKey, NvmeSeries> series;
  std::uint64_t untracked = 0;
};

// Names every kernel entry. `device_name` maps a device number (major << 20 | minor) to its name; entries whose
// name `keep` rejects (--devices) are left out. Admin commands (dev 0) are always kept.
template <typename NameFn, typename KeepFn>
std::map<NvmeKey, NvmeSeries> decode_nvme(const std::vector<std::pair<sp_nvme_key, sp_nvme_hist>>& raw,
                                          NameFn&& device_name, KeepFn&& keep) {
  std::map<NvmeKey, NvmeSeries> out;
  for (const auto& [k, h] : raw) {
    std::string device = k.dev == 0 ? "controller" : device_name(k.dev);
    if (k.dev != 0 && !keep(device)) continue;
    NvmeKey key{std::move(device), std::to_string(k.qid), nvme_opcode_name(k.qid, k.opcode),
                nvme_status_name(k.status)};
    NvmeSeries s;
    s.latency = IoHistogram::from_kernel(h.buckets, h.count, h.sum_ns);
    out[key].add(s);
  }
  return out;
}

}  // namespace sp
