// The files of tests/data (SP_TEST_DATA_DIR, defined for the test programs by tests/CMakeLists.txt), read whole.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

namespace sp::test {

// tests/data/RELATIVE's bytes; a test failure (and "") when it cannot be read.
inline std::string read_test_data(const std::string& relative) {
  std::ifstream in(std::string(SP_TEST_DATA_DIR) + "/" + relative, std::ios::binary);
  EXPECT_TRUE(in.good()) << relative;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace sp::test
