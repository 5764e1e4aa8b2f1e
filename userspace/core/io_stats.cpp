#include "core/io_stats.h"

#include "blockio.h"

namespace sp {

std::string io_op_name(std::uint32_t op) {
  switch (op) {
    case SP_IO_READ: return "read";
    case SP_IO_WRITE: return "write";
    case SP_IO_WRITE_SYNC: return "write_sync";
    case SP_IO_FLUSH: return "flush";
    case SP_IO_DISCARD: return "discard";
    default: return "other";
  }
}

}  // namespace sp
