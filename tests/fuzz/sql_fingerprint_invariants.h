// What must hold for the fingerprint of ANY input, checked by the fuzz target and the unit tests alike, and the
// fragments both use to build SQL-ish text whose secrets sit only inside literals and comments.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "core/postgres/sql_fingerprint.h"

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

// Fragments joined by spaces make SQL-ish text in which every secret is inside a literal or a comment (no fragment
// leaves a quote or comment open), so no piece of a secret may survive in a fingerprint of that text or of any
// prefix of it. Secret fragments hold "zqxj" or the digits 7355608 / 9028; nothing else does.
inline constexpr std::array<std::string_view, 28> kSqlSecretFragments = {
    "'syt_zqxjAbCd_0123'",  "'it''s zqxj'",          "E'zqxj\\'s \\\\ x'",        "e'\\\\zqxj'",
    "$$zqxj ' \" ; $$",     "$t$zqxj $x$ $ $t$",     "$a_1$ zqxj $a_1$",              "B'1011'",
    "X'7355608'",           "N'zqxj'",               "U&'zqxj\\0041'",              "'\\x7355608'::bytea",
    "E'\\\\x7355608'::bytea", "7355608",           "-7355608",                      "735.5608e-10",
    "0x7355608",            ".7355608",              "7_355_608",                     "$7355608",
    "'zqxj'\n  'zqxj'",     "-- zqxj ' comment\n",   "/* zqxj /* nested 'x */ zqxj */", "'{zqxj,9028}'",
    "TRUE",                 "false",                 "' -9028.0'",                    "'@zqxj:example.org'",
};
inline constexpr std::array<std::string_view, 67> kSqlPlainFragments = {
    "SELECT", "select", "FROM", "events", "public.events", "WHERE", "room_id", "=", "<>", ">=", "AND", "OR",
    "IN", "(", ")", "(", ")", ",", ",", ";", "VALUES", "INSERT INTO", "access_tokens", "UPDATE", "SET", "DELETE",
    "WITH", "x AS", "::text", "ARRAY[", "]", "ANY(", "\"user\"", "\"we\"\"ird\"", "NULL", "IS", "NOT", "-", "+",
    "*", "||", "ON CONFLICT", "DO UPDATE", "EXCLUDED.token", "BEGIN", "COMMIT", "ROLLBACK TO", "savepoint",
    "LIMIT", "ORDER BY", "\t", "\n", "  ", "e", "u&", "$", ":", ".", "count(*)", "COALESCE(", "caf\xc3\xa9",
    "JOIN", "UNION", "RECURSIVE", "/", "@", "~",
};
// What must not appear (lower-cased) in any fingerprint of fragment text.
inline constexpr std::array<std::string_view, 4> kSqlSecretPieces = {"zqxj", "7355608", "735", "9028"};

inline std::string secret_survivor(const SqlFingerprint& fp) {
  std::string text = fp.text + " " + fp.table;
  for (char& c : text) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  for (const auto piece : kSqlSecretPieces) {
    if (text.find(piece) != std::string::npos) return std::string(piece);
  }
  return {};
}

}  // namespace sp::test
