// libFuzzer target for the SQL fingerprinter: any bytes, flagged as cut or not, must give a fingerprint that keeps
// the invariants in sql_fingerprint_invariants.h (bounded, valid UTF-8, no literal-looking residue, safe table).
// Built as a real fuzzer with -DSP_FUZZ=ON (clang), otherwise as sp_fuzz_sql_regress over tests/data/fuzz/sql.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/sql_fingerprint.h"
#include "sql_fingerprint_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view sql(reinterpret_cast<const char*>(data), size);
  for (const bool cut : {false, true}) {
    const sp::SqlFingerprint fp = sp::fingerprint_sql(sql, cut);
    const std::string failure = sp::test::fingerprint_invariant_failure(fp);
    if (!failure.empty()) {
      std::fprintf(stderr, "invariant broken (input_truncated=%d): %s\ntext: %s\ntable: %s\n", cut ? 1 : 0,
                   failure.c_str(), fp.text.c_str(), fp.table.c_str());
      std::abort();
    }
  }
  return 0;
}
