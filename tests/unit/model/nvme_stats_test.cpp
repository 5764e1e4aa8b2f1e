// NVMe decoding with synthetic kernel entries: opcode and status names, device naming and --devices, and the
// exported series.
#include <gtest/gtest.h>

#include "core/model/nvme_stats.h"
#include "exporter/metric_builders.h"
#include "exporter/probe_metrics.h"

namespace {

std::pair<sp_nvme_key, sp_nvme_hist> entry(std::uint32_t dev, std::uint16_t qid, std::uint8_t opcode,
                                           std::uint16_t status, std::initializer_list<std::uint64_t> durations_ns) {
  sp_nvme_key k{};
  k.dev = dev;
  k.qid = qid;
  k.opcode = opcode;
  k.status = status;
  sp_nvme_hist h{};
  const std::uint64_t bounds[SP_IO_BOUNDS] = SP_IO_BOUNDS_NS;
  for (auto ns : durations_ns) {
    std::size_t b = 0;
    while (b < SP_IO_BOUNDS && ns > bounds[b]) ++b;
    ++h.buckets[b];
    ++h.count;
    h.sum_ns += ns;
  }
  return {k, h};
}

constexpr std::uint32_t kNvme0n1 = (259u << 20) | 0;
constexpr std::uint32_t kNvme1n1 = (259u << 20) | 1;

std::string name_of(std::uint32_t dev) { return dev == kNvme0n1 ? "nvme0n1" : dev == kNvme1n1 ? "nvme1n1" : "?"; }

}  // namespace

TEST(NvmeStats, OpcodeNamesDependOnTheQueue) {
  EXPECT_EQ(sp::nvme_opcode_name(1, 0x02), "read");
  EXPECT_EQ(sp::nvme_opcode_name(3, 0x01), "write");
  EXPECT_EQ(sp::nvme_opcode_name(3, 0x00), "flush");
  EXPECT_EQ(sp::nvme_opcode_name(2, 0x09), "dataset_management");
  EXPECT_EQ(sp::nvme_opcode_name(2, 0x08), "write_zeroes");
  EXPECT_EQ(sp::nvme_opcode_name(1, 0x7f), "0x7f");
  // The admin queue's opcode 0x02 is Get Log Page, 0x06 Identify.
  EXPECT_EQ(sp::nvme_opcode_name(0, 0x02), "get_log_page");
  EXPECT_EQ(sp::nvme_opcode_name(0, 0x06), "identify");
  EXPECT_EQ(sp::nvme_opcode_name(0, 0xc1), "admin_0xc1");
}

TEST(NvmeStats, StatusNamesIgnoreTheRetryBits) {
  EXPECT_EQ(sp::nvme_status_name(0x0000), "success");
  EXPECT_EQ(sp::nvme_status_name(0x0080), "lba_out_of_range");
  EXPECT_EQ(sp::nvme_status_name(0x0281), "unrecovered_read_error");
  EXPECT_EQ(sp::nvme_status_name(0x4281), "unrecovered_read_error") << "Do Not Retry does not change the cause";
  EXPECT_EQ(sp::nvme_status_name(0x2000 | 0x1800 | 0x0006), "internal_error") << "More and CRD neither";
  EXPECT_EQ(sp::nvme_status_name(0x0370), "host_path_error");
  EXPECT_EQ(sp::nvme_status_name(0x0303), "ana_transition");
  EXPECT_EQ(sp::nvme_status_name(0x0155), "sct1_0x55");
  EXPECT_EQ(sp::nvme_status_name(0x0755), "sct7_0x55");
  EXPECT_EQ(sp::nvme_status_name(SP_NVME_STATUS_UNKNOWN), "unknown");
}

TEST(NvmeStats, DecodeNamesDevicesKeepsAdminAndAppliesTheDeviceFilter) {
  std::vector<std::pair<sp_nvme_key, sp_nvme_hist>> raw = {
      entry(kNvme0n1, 1, 0x02, 0, {20'000, 80'000}),
      entry(kNvme0n1, 2, 0x02, 0, {30'000}),
      entry(kNvme0n1, 2, 0x02, 0x4281, {5'000'000}),
      entry(kNvme1n1, 1, 0x01, 0, {40'000}),
      entry(0, 0, 0x06, 0, {1'000'000}),
  };
  auto keep_nvme0 = [](const std::string& d) { return d == "nvme0n1"; };
  auto series = sp::decode_nvme(raw, name_of, keep_nvme0);
  ASSERT_EQ(series.size(), 4u);
  const sp::NvmeSeries& ok1 = series.at({"nvme0n1", "1", "read", "success"});
  EXPECT_EQ(ok1.latency.count, 2u);
  EXPECT_EQ(ok1.latency.sum_ns, 100'000u);
  EXPECT_EQ(series.at({"nvme0n1", "2", "read", "unrecovered_read_error"}).latency.count, 1u);
  EXPECT_EQ(series.at({"controller", "0", "identify", "success"}).latency.count, 1u);
  EXPECT_EQ(series.count({"nvme1n1", "1", "write", "success"}), 0u) << "--devices left nvme1n1 out";
}

TEST(NvmeStats, ExportedCountsPerQueueAndStatusLatencyPerDeviceAndOpcode) {
  sp::NvmeSnapshot snap;
  snap.active = true;
  snap.series = sp::decode_nvme(
      std::vector<std::pair<sp_nvme_key, sp_nvme_hist>>{entry(kNvme0n1, 1, 0x02, 0, {20'000, 80'000}),
                                                        entry(kNvme0n1, 2, 0x02, 0, {30'000}),
                                                        entry(kNvme0n1, 2, 0x02, 0x0281, {5'000'000})},
      name_of, [](const std::string&) { return true; });
  std::string t = sp::exporter::to_text(sp::exporter::nvme_metrics(snap));
  EXPECT_NE(t.find("synapse_profiler_nvme_commands_total{device=\"nvme0n1\",queue=\"1\",opcode=\"read\","
                   "status=\"success\"} 2\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("synapse_profiler_nvme_commands_total{device=\"nvme0n1\",queue=\"2\",opcode=\"read\","
                   "status=\"unrecovered_read_error\"} 1\n"),
            std::string::npos)
      << t;
  // One histogram over both queues and both statuses: 4 commands, 5.13 ms.
  EXPECT_NE(t.find("synapse_profiler_nvme_command_seconds_count{device=\"nvme0n1\",opcode=\"read\"} 4\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("synapse_profiler_nvme_command_seconds_sum{device=\"nvme0n1\",opcode=\"read\"} 0.00513\n"),
            std::string::npos)
      << t;
  // Cumulative buckets: 20 us <= 25 us; 30 and 80 us <= 100 us; 5 ms <= 5 ms.
  for (auto [le, n] : {std::pair<const char*, int>{"2.5e-05", 1}, {"0.0001", 3}, {"0.0025", 3}, {"0.005", 4}}) {
    EXPECT_NE(t.find(std::string("synapse_profiler_nvme_command_seconds_bucket{device=\"nvme0n1\",opcode=\"read\",le=\"") +
                     le + "\"} " + std::to_string(n) + "\n"),
              std::string::npos)
        << le << "\n" << t;
  }
}
