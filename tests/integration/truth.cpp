#include "truth.h"

#include <fstream>
#include <regex>

namespace sp::test {

std::optional<std::int64_t> TruthRecord::integer(const std::string& key) const {
  std::smatch m;
  std::regex re("\"" + key + "\":(-?[0-9]+)");
  if (!std::regex_search(line, m, re)) return std::nullopt;
  return std::stoll(m[1].str());
}

std::optional<std::string> TruthRecord::text(const std::string& key) const {
  std::smatch m;
  std::regex re("\"" + key + "\":\"((?:[^\"\\\\]|\\\\.)*)\"");
  if (!std::regex_search(line, m, re)) return std::nullopt;
  return m[1].str();
}

std::vector<TruthRecord> read_truth(const std::string& path) {
  std::vector<TruthRecord> out;
  std::ifstream in(path);
  std::string line;
  std::regex type_re("^\\{\"type\":\"([a-z_]+)\"");
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, type_re)) continue;
    out.push_back({m[1].str(), line});
  }
  return out;
}

std::vector<TruthRecord> truth_of_type(const std::vector<TruthRecord>& all, const std::string& type) {
  std::vector<TruthRecord> out;
  for (const auto& r : all) {
    if (r.type == type) out.push_back(r);
  }
  return out;
}

}  // namespace sp::test
