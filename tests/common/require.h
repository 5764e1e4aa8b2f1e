// The skip policy shared by every test: a test may skip only for a missing environment, with the reason printed;
// under SYNAPSE_PROFILER_REQUIRE_BPF=1 (set by CI, whose set-up installs everything) a skip is a failure, so no test
// can pass by not running.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace sp::test {

inline bool environment_required() {
  const char* v = std::getenv("SYNAPSE_PROFILER_REQUIRE_BPF");
  return v && std::string(v) == "1";
}

}  // namespace sp::test

#define SP_SKIP_UNLESS_BPF_REQUIRED(reason)                                                               \
  do {                                                                                                    \
    if (::sp::test::environment_required()) FAIL() << "SYNAPSE_PROFILER_REQUIRE_BPF=1 but: " << (reason); \
    GTEST_SKIP() << (reason);                                                                             \
  } while (0)
