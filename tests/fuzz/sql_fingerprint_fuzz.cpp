// libFuzzer target for the SQL fingerprinter. Two checks on every input:
//   1. the bytes as SQL, flagged as cut and not: the fingerprint keeps the invariants of sql_fingerprint_invariants.h
//      (bounded, valid UTF-8, no literal-looking residue, safe verb and table);
//   2. the bytes as a recipe: each byte picks a fragment (kSqlSecretFragments / kSqlPlainFragments), the fragments
//      joined by spaces make SQL whose secrets sit only inside literals and comments, and no piece of a secret may
//      survive in the fingerprint of that text or of any prefix of it (every cut the probe could make).
// Built as a real fuzzer with -DSP_FUZZ=ON (clang), otherwise as sp_fuzz_sql_regress over tests/data/fuzz/sql.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/postgres/sql_fingerprint.h"
#include "sql_fingerprint_invariants.h"

namespace {

void fail(const char* what, const std::string& detail, const sp::SqlFingerprint& fp, std::string_view input) {
  std::fprintf(stderr, "%s: %s\ntext: %s\ntable: %s\ninput (%zu bytes): %.*s\n", what, detail.c_str(),
               fp.text.c_str(), fp.table.c_str(), input.size(), static_cast<int>(std::min<std::size_t>(input.size(), 2000)),
               input.data());
  std::abort();
}

void check_invariants(std::string_view sql, bool cut) {
  const sp::SqlFingerprint fp = sp::fingerprint_sql(sql, cut);
  const std::string failure = sp::test::fingerprint_invariant_failure(fp);
  if (!failure.empty()) fail(cut ? "invariant broken (input_truncated)" : "invariant broken", failure, fp, sql);
}

// The first kMaxFragments bytes pick fragments; the pairs of bytes after them pick up to kMaxCuts cut points (the
// unit tests sweep every cut of random fragment text; here the fuzzer steers towards the interesting ones).
constexpr std::size_t kMaxFragments = 64;
constexpr std::size_t kMaxCuts = 16;

void check_fragments(const std::uint8_t* data, std::size_t size) {
  using sp::test::kSqlPlainFragments;
  using sp::test::kSqlSecretFragments;
  const std::size_t fragments = std::min(size, kMaxFragments);
  std::string sql;
  for (std::size_t i = 0; i < fragments; ++i) {
    const std::size_t k = data[i] % (kSqlSecretFragments.size() + kSqlPlainFragments.size());
    sql += k < kSqlSecretFragments.size() ? kSqlSecretFragments[k] : kSqlPlainFragments[k - kSqlSecretFragments.size()];
    sql += ' ';
  }
  auto check = [&](std::size_t cut) {
    const std::string_view prefix(sql.data(), cut);
    const sp::SqlFingerprint fp = sp::fingerprint_sql(prefix, cut < sql.size());
    const std::string survivor = sp::test::secret_survivor(fp);
    if (!survivor.empty()) fail("secret survived", survivor, fp, prefix);
  };
  check(sql.size());
  for (std::size_t i = fragments, n = 0; i + 1 < size && n < kMaxCuts; i += 2, ++n) {
    check(((static_cast<std::size_t>(data[i]) << 8) | data[i + 1]) % (sql.size() + 1));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view sql(reinterpret_cast<const char*>(data), size);
  check_invariants(sql, false);
  check_invariants(sql, true);
  check_fragments(data, size);
  return 0;
}
