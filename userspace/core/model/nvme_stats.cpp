#include "core/model/nvme_stats.h"

#include <fmt/core.h>

namespace sp {

std::string nvme_opcode_name(std::uint16_t qid, std::uint8_t opcode) {
  if (qid == 0) {
    switch (opcode) {
      case 0x00: return "delete_io_sq";
      case 0x01: return "create_io_sq";
      case 0x02: return "get_log_page";
      case 0x04: return "delete_io_cq";
      case 0x05: return "create_io_cq";
      case 0x06: return "identify";
      case 0x08: return "abort";
      case 0x09: return "set_features";
      case 0x0a: return "get_features";
      case 0x0c: return "async_event";
      case 0x0d: return "ns_mgmt";
      case 0x10: return "fw_commit";
      case 0x11: return "fw_download";
      case 0x18: return "keep_alive";
      case 0x80: return "format_nvm";
      case 0x84: return "sanitize";
      default: return fmt::format("admin_0x{:02x}", opcode);
    }
  }
  switch (opcode) {
    case 0x00: return "flush";
    case 0x01: return "write";
    case 0x02: return "read";
    case 0x04: return "write_uncorrectable";
    case 0x05: return "compare";
    case 0x08: return "write_zeroes";
    case 0x09: return "dataset_management";
    case 0x0c: return "verify";
    case 0x0d: return "reservation_register";
    case 0x0e: return "reservation_report";
    case 0x11: return "reservation_acquire";
    case 0x15: return "reservation_release";
    case 0x79: return "zone_mgmt_send";
    case 0x7a: return "zone_mgmt_recv";
    case 0x7d: return "zone_append";
    default: return fmt::format("0x{:02x}", opcode);
  }
}

std::string nvme_status_name(std::uint16_t status) {
  if (status == SP_NVME_STATUS_UNKNOWN) return "unknown";
  // Bits 0-7 status code, 8-10 status code type; 11-12 command retry delay, 13 more, 14 do not retry: not the cause.
  const unsigned code = status & 0x7ffU;
  switch (code) {
    case 0x000: return "success";
    // Generic command status.
    case 0x001: return "invalid_opcode";
    case 0x002: return "invalid_field";
    case 0x003: return "command_id_conflict";
    case 0x004: return "data_transfer_error";
    case 0x005: return "aborted_power_loss";
    case 0x006: return "internal_error";
    case 0x007: return "abort_requested";
    case 0x008: return "aborted_sq_deleted";
    case 0x009: return "aborted_fused_fail";
    case 0x00a: return "aborted_fused_missing";
    case 0x00b: return "invalid_namespace";
    case 0x00c: return "command_sequence_error";
    case 0x080: return "lba_out_of_range";
    case 0x081: return "capacity_exceeded";
    case 0x082: return "namespace_not_ready";
    case 0x083: return "reservation_conflict";
    // Media and data integrity errors.
    case 0x280: return "write_fault";
    case 0x281: return "unrecovered_read_error";
    case 0x282: return "guard_check_error";
    case 0x283: return "application_tag_check_error";
    case 0x284: return "reference_tag_check_error";
    case 0x285: return "compare_failure";
    case 0x286: return "access_denied";
    case 0x287: return "deallocated_or_unwritten_block";
    // Path related status.
    case 0x300: return "internal_path_error";
    case 0x301: return "ana_persistent_loss";
    case 0x302: return "ana_inaccessible";
    case 0x303: return "ana_transition";
    case 0x360: return "controller_path_error";
    case 0x370: return "host_path_error";
    case 0x371: return "aborted_by_host";
    default: return fmt::format("sct{}_0x{:02x}", (code >> 8) & 0x7U, code & 0xffU);
  }
}

}  // namespace sp
