// SQL fingerprinting: the first thing that happens to query text the libpq probe copies out of a Synapse worker.
// psycopg2 interpolates parameters client-side, so that text carries access tokens, password hashes, user ids and
// IPs as literals. fingerprint_sql() reduces it to a shape with every literal removed, plus the verb and first table
// that label `db_client_query_seconds`. Callers keep only the result and drop the raw buffer at once; raw text never
// leaves the process unless the user asks for it explicitly.
//
// The scanner follows PostgreSQL's lexical rules (src/backend/parser/scan.l) closely enough that a literal is never
// mistaken for something else:
//   - '...' standard strings ('' doubles a quote, backslash is ordinary: standard_conforming_strings=on, the default
//     since PostgreSQL 9.1; psycopg2 switches to E'...' by itself when the server runs with it off), E'...' escape
//     strings (backslash escapes anything), B'...', X'...', N'...', U&'...', string continuation across a newline
//     ('a'\n'b' is one literal), $$...$$ and $tag$...$tag$;
//   - numbers in every form (123, 4.5, .5, 1e-3, PG16's 0x1F / 0o17 / 0b101 / 1_000), greedily including any
//     identifier characters stuck to them (123abc is dropped whole, never half kept as an identifier);
//   - -- and nested /* */ comments; "quoted identifiers" (kept); U&"..." identifiers (kept).
//
// Fingerprint text (decisions):
//   - every literal becomes `?`: strings of every kind, numbers (with a unary sign: `x = -1` -> `x = ?`), bytea
//     ('\x01'::bytea -> `?::bytea`), TRUE/FALSE (except after IS / IS NOT). NULL and DEFAULT stay keywords: they
//     hold no data and `IS NULL` is shape. Positional parameters ($1, from PQexecParams) also become `?`, so a
//     prepared and an interpolated form of one statement share a fingerprint.
//   - lists are collapsed: `IN (...)` for a list of constants (tuples too), `ARRAY[...]` for constant arrays,
//     `VALUES (?, ?), ...` (first row kept, the rest replaced by `, ...`), and a run of identical statements
//     (psycopg2's execute_batch joins them with `;`) is kept once followed by `; ...`.
//   - unquoted words (keywords and identifiers alike) are lower-cased (ASCII); "quoted identifiers" are kept with their
//     quotes and case. Comments and trailing semicolons are dropped; whitespace becomes single spaces placed by the
//     token kinds (never by the input's layout), so reformatting a query does not change its fingerprint.
//   - bytes that are not valid UTF-8, and control characters in quoted identifiers, become U+FFFD: the text is always
//     valid UTF-8.
//   - a NUL byte ends the statement (libpq sends a C string); nothing after it is looked at.
//   - the text is capped at kSqlFingerprintMaxText bytes, cut at a token boundary and ended with kSqlTruncatedMarker.
//
// Truncated input (the probe copies only the first N bytes): with input_truncated, the last token is dropped if it
// reaches the end of the input and is a word or operator (it may be partial: `room_i`); a literal that runs to the
// end of the input, terminated or not, is a `?`. Unterminated literals, comments and quoted identifiers are never
// copied, whatever the flag says. In all these cases `truncated` is set and the text ends with the marker.
//
// Never throws (std::bad_alloc aside), linear time, no reads outside `sql`, any bytes accepted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sp {

inline constexpr std::size_t kSqlFingerprintMaxText = 1024;  // bytes of SqlFingerprint::text, marker included
inline constexpr std::size_t kSqlTableMaxLength = 63;        // PostgreSQL's NAMEDATALEN - 1
inline constexpr std::string_view kSqlTruncatedMarker = " /* truncated */";

struct SqlFingerprint {
  std::string text;        // normalised statement, no literals; see above
  std::uint64_t id = 0;    // sql_fingerprint_id(text): stable across runs, builds and machines
  std::string verb;        // SELECT INSERT UPDATE DELETE BEGIN COMMIT ROLLBACK or "other"
  std::string table;       // first table named, [a-z0-9_]{1,63}, "other" if it has other characters, "" if none
  bool truncated = false;  // the input was cut (flagged or found unterminated) or the text was capped
};

// verb: of the first statement. WITH ... takes the verb of its main statement. START TRANSACTION is BEGIN, END is
// COMMIT, ABORT is ROLLBACK; ROLLBACK TO SAVEPOINT is "other" (it ends no transaction), as are SAVEPOINT, RELEASE,
// SET, LOCK, EXPLAIN, COPY, DDL and everything else.
// table: SELECT's first FROM item (looking into a parenthesised subquery; table functions such as unnest(...) are
// skipped), INSERT INTO t, UPDATE t, DELETE FROM t, and for "other" verbs LOCK [TABLE] t, TRUNCATE [TABLE] t, COPY t.
// For WITH, the main statement's table; if that names a CTE, the table inside that CTE. The schema is dropped
// (public.events -> events): Synapse uses one schema, and a label should not vary with search_path habits.
// Quoted names are unquoted and lower-cased.
SqlFingerprint fingerprint_sql(std::string_view sql, bool input_truncated = false);

// fingerprint_sql(sql, input_truncated).verb, without the fingerprint when the statement plainly starts with its verb
// (SELECT, INSERT, UPDATE, DELETE, BEGIN, COMMIT, END followed by a space, '(', ';' or '*'): about a tenth of the
// cost for what the server-side probe records of every statement. Anything else takes the full path.
std::string sql_verb(std::string_view sql, bool input_truncated = false);

// 64-bit FNV-1a of the bytes. Pinned by tests: ids may be stored and compared across versions.
std::uint64_t sql_fingerprint_id(std::string_view text);

}  // namespace sp
