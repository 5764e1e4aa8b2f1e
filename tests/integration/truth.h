// Reading the Synapse-like workload's ground truth (JSON lines written by tests/workload/synapse/_workload/truth.py).
// Only the flat integer and string fields the tests compare are extracted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sp::test {

struct TruthRecord {
  std::string type;
  std::string line;  // the raw JSON line
  std::optional<std::int64_t> integer(const std::string& key) const;
  std::optional<std::string> text(const std::string& key) const;
};

std::vector<TruthRecord> read_truth(const std::string& path);
std::vector<TruthRecord> truth_of_type(const std::vector<TruthRecord>& all, const std::string& type);

}  // namespace sp::test
