// What must hold for the fingerprint of ANY input, checked by the fuzz target and the unit tests alike.
// Returns an empty string when all hold, else what broke.
#pragma once

#include <string>
#include <string_view>

#include "core/sql_fingerprint.h"

namespace sp::test {

inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c < 0x80) n = 1;
    else if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else return false;
    if (n > s.size() - i) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : ((b & 0xC0) != 0x80)) return false;
    }
    i += n;
  }
  return true;
}

inline bool ident_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
         c >= 0x80;
}

inline std::string fingerprint_invariant_failure(const SqlFingerprint& fp) {
  const std::string& t = fp.text;
  if (t.size() > kSqlFingerprintMaxText) return "text longer than the cap";
  if (!valid_utf8(t)) return "text is not valid UTF-8";
  if (fp.id != sql_fingerprint_id(t)) return "id is not the hash of the text";
  if (fp.truncated && !t.ends_with(kSqlTruncatedMarker.substr(1))) return "truncated without the marker";
  // Outside quoted identifiers (the only thing kept verbatim): no control character, no quote that could open a
  // string literal, no token that starts with a digit (a number). Any of these would be a literal that survived.
  for (std::size_t i = 0; i < t.size(); ++i) {
    const auto c = static_cast<unsigned char>(t[i]);
    if (c == '"') {
      for (++i; i < t.size() && t[i] != '"'; ++i) {
      }
      if (i >= t.size()) return "unbalanced quoted identifier in text";
      continue;
    }
    if (c < 0x20 || c == 0x7F) return "control character in text";
    if (c == '\'') return "single quote outside a quoted identifier";
    if (c >= '0' && c <= '9' && (i == 0 || !ident_byte(static_cast<unsigned char>(t[i - 1])))) {
      return "token starting with a digit";
    }
  }
  static constexpr std::string_view kVerbs[] = {"SELECT", "INSERT", "UPDATE", "DELETE",
                                                "BEGIN",  "COMMIT", "ROLLBACK", "other"};
  bool verb_ok = false;
  for (const auto v : kVerbs) verb_ok = verb_ok || fp.verb == v;
  if (!verb_ok) return "unknown verb";
  if (fp.table.size() > kSqlTableMaxLength) return "table too long";
  for (const char c : fp.table) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return "table has unsafe characters";
  }
  return {};
}

}  // namespace sp::test
