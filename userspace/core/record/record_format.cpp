#include "core/record/record_format.h"

#include <fmt/core.h>

namespace sp::record_format {

std::string worker_title(const WorkerLabels& w) {
  return w.worker_app.empty() ? w.worker : fmt::format("{} ({})", w.worker, w.worker_app);
}

std::string query_name(const QueryEvent& q) {
  return q.table.empty() ? q.verb : fmt::format("{} {}", q.verb, q.table);
}

double seconds(std::uint64_t from, std::uint64_t to) { return to > from ? static_cast<double>(to - from) / 1e9 : 0; }

std::string pct(double share) { return fmt::format("{:.1f} %", share * 100); }
std::string ms(double seconds) { return fmt::format("{:.2f} ms", seconds * 1e3); }

}  // namespace sp::record_format
