#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../../fuzz/sql_fingerprint_invariants.h"
#include "core/postgres/sql_fingerprint.h"

using sp::fingerprint_sql;
using sp::sql_verb;
using sp::SqlFingerprint;

namespace {

const std::string kSqlData = std::string(SP_TEST_DATA_DIR) + "/sql/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct Golden {
  std::string file;
  bool input_truncated = false;
  std::string fingerprint;
  std::string verb;
  std::string table;
  bool truncated = false;
  std::vector<std::string> secrets;
};

// tests/data/sql/expected.txt: see the comment at its top.
std::vector<Golden> load_golden() {
  std::vector<Golden> out;
  std::istringstream in(read_file(kSqlData + "expected.txt"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.front() == '[' && line.back() == ']') {
      out.emplace_back();
      out.back().file = line.substr(1, line.size() - 2);
      continue;
    }
    const auto eq = line.find(" = ");
    const std::string key = eq == std::string::npos ? line.substr(0, line.find(" =")) : line.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : line.substr(eq + 3);
    if (out.empty()) throw std::runtime_error("expected.txt: value before the first [file]: " + line);
    Golden& g = out.back();
    if (key == "input_truncated") g.input_truncated = value == "yes";
    else if (key == "fingerprint") g.fingerprint = value;
    else if (key == "verb") g.verb = value;
    else if (key == "table") g.table = value;
    else if (key == "truncated") g.truncated = value == "yes";
    else if (key == "secret") g.secrets.push_back(value);
    else throw std::runtime_error("expected.txt: unknown key: " + line);
  }
  return out;
}

std::string block_for(const std::string& file, bool input_truncated, const SqlFingerprint& fp) {
  std::string b = "[" + file + "]\n";
  if (input_truncated) b += "input_truncated = yes\n";
  b += "fingerprint = " + fp.text + "\nverb = " + fp.verb + "\ntable = " + fp.table +
       "\ntruncated = " + (fp.truncated ? "yes" : "no") + "\n";
  return b;
}

// An independent, deliberately simple scan for the payloads of string and number literals (PostgreSQL rules for
// the constructs used in tests/data/sql), so that the golden data's literals are known without trusting the code
// under test.
std::vector<std::string> literal_payloads(const std::string& s) {
  std::vector<std::string> out;
  auto ident = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; };
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const char c = s[i];
    if (c == '\0') break;
    if (s.compare(i, 2, "--") == 0) {
      i = s.find('\n', i);
      if (i == std::string::npos) break;
    } else if (s.compare(i, 2, "/*") == 0) {
      int depth = 0;
      do {
        if (s.compare(i, 2, "/*") == 0) ++depth, i += 2;
        else if (s.compare(i, 2, "*/") == 0) --depth, i += 2;
        else ++i;
      } while (i < n && depth > 0);
    } else if (c == '"') {
      i = s.find('"', i + 1);
      if (i == std::string::npos) break;
      ++i;
    } else if (c == '\'') {
      const bool escapes = i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
      std::string payload;
      std::size_t j = i + 1;
      for (; j < n; ++j) {
        if (escapes && s[j] == '\\' && j + 1 < n) {
          payload += s[++j];
        } else if (s[j] == '\'') {
          if (j + 1 < n && s[j + 1] == '\'') payload += s[++j];
          else break;
        } else {
          payload += s[j];
        }
      }
      out.push_back(payload);
      i = j + 1;
    } else if (c == '$' && i + 1 < n && (s[i + 1] == '$' || std::isalpha(static_cast<unsigned char>(s[i + 1])))) {
      const std::size_t close_tag = s.find('$', i + 1);
      if (close_tag == std::string::npos) break;
      const std::string tag = s.substr(i, close_tag + 1 - i);
      const std::size_t end = s.find(tag, close_tag + 1);
      out.push_back(s.substr(close_tag + 1, end == std::string::npos ? std::string::npos : end - close_tag - 1));
      if (end == std::string::npos) break;
      i = end + tag.size();
    } else if (std::isdigit(static_cast<unsigned char>(c)) && (i == 0 || !ident(static_cast<unsigned char>(s[i - 1])))) {
      std::size_t j = i;
      while (j < n && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.')) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    } else if (ident(static_cast<unsigned char>(c))) {
      while (i < n && ident(static_cast<unsigned char>(s[i]))) ++i;
    } else {
      ++i;
    }
  }
  return out;
}

// `needle` occurs in `hay` as a whole token (not inside a longer identifier).
bool contains_token(const std::string& hay, const std::string& needle) {
  auto word = [](unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; };
  for (std::size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
    const bool left = p == 0 || !word(static_cast<unsigned char>(hay[p - 1])) || !word(static_cast<unsigned char>(needle.front()));
    const std::size_t e = p + needle.size();
    const bool right = e >= hay.size() || !word(static_cast<unsigned char>(hay[e])) || !word(static_cast<unsigned char>(needle.back()));
    if (left && right) return true;
  }
  return false;
}

// Every 6-byte piece of a secret (the whole secret when shorter).
std::vector<std::string> pieces(const std::string& secret) {
  const std::string s = lower(secret);
  if (s.size() <= 6) return {s};
  std::vector<std::string> out;
  for (std::size_t i = 0; i + 6 <= s.size(); ++i) out.push_back(s.substr(i, 6));
  return out;
}

void expect_no_secret(const SqlFingerprint& fp, const std::vector<std::string>& secret_pieces, const std::string& what) {
  const std::string text = lower(fp.text);
  for (const auto& p : secret_pieces) {
    ASSERT_EQ(text.find(p), std::string::npos) << what << ": \"" << p << "\" in " << fp.text;
    ASSERT_EQ(fp.table.find(p), std::string::npos) << what << ": \"" << p << "\" in table " << fp.table;
  }
}

void expect_invariants(const SqlFingerprint& fp, const std::string& what) {
  const std::string failure = sp::test::fingerprint_invariant_failure(fp);
  ASSERT_TRUE(failure.empty()) << what << ": " << failure << ": " << fp.text;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Golden data

TEST(SqlFingerprintGolden, EveryFileMatchesItsBlock) {
  const auto golden = load_golden();
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(kSqlData)) {
    if (entry.path().extension() == ".sql") files.insert(entry.path().filename().string());
  }
  ASSERT_GE(files.size(), 50u);
  std::set<std::string> covered;
  std::string actual_blocks;
  for (const auto& g : golden) {
    ASSERT_TRUE(files.count(g.file)) << "block without a file: " << g.file;
    covered.insert(g.file);
    const SqlFingerprint fp = fingerprint_sql(read_file(kSqlData + g.file), g.input_truncated);
    expect_invariants(fp, g.file);
    const bool same = fp.text == g.fingerprint && fp.verb == g.verb && fp.table == g.table && fp.truncated == g.truncated;
    EXPECT_TRUE(same) << "expected:\n" << block_for(g.file, g.input_truncated, SqlFingerprint{g.fingerprint, 0, g.verb, g.table, g.truncated})
                      << "actual:\n" << block_for(g.file, g.input_truncated, fp);
  }
  for (const auto& f : files) EXPECT_TRUE(covered.count(f)) << "no block in expected.txt for " << f;
}

// The safety property on the golden data: no declared secret, and no literal payload found by an independent scan,
// survives in the fingerprint or table of the file, nor of any prefix of it (every point where the probe may cut).
TEST(SqlFingerprintGolden, NoLiteralSurvivesAtAnyCut) {
  std::size_t checked = 0;
  for (const auto& g : load_golden()) {
    const std::string sql = read_file(kSqlData + g.file);
    std::vector<std::string> secret_pieces;
    for (const auto& s : g.secrets) {
      for (auto& p : pieces(s)) secret_pieces.push_back(std::move(p));
    }

    // Whole payloads of at least 3 bytes, as tokens (a literal 'join' must not trip over an alias "joined").
    const SqlFingerprint whole = fingerprint_sql(sql, g.input_truncated);
    for (const auto& payload : literal_payloads(sql)) {
      if (payload.size() < 3) continue;
      EXPECT_FALSE(contains_token(lower(whole.text), lower(payload))) << g.file << ": literal \"" << payload << "\" in "
                                                                       << whole.text;
    }
    expect_no_secret(whole, secret_pieces, g.file);

    // Every cut the probe can make (it copies at most 4 KiB), then a stride through longer files.
    for (std::size_t cut = 0; cut <= sql.size(); cut += cut < 4096 ? 1 : 37) {
      const std::string prefix = sql.substr(0, cut);
      for (const bool flagged : {true, false}) {
        const SqlFingerprint fp = fingerprint_sql(prefix, flagged);
        expect_no_secret(fp, secret_pieces, g.file + " cut at " + std::to_string(cut));
        expect_invariants(fp, g.file + " cut at " + std::to_string(cut));
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 10000u);
}

// ---------------------------------------------------------------------------------------------------------------
// Random SQL-ish text built from fragments, with secrets only ever inside literals and comments.

TEST(SqlFingerprintProperty, SecretsNeverSurviveRandomStatementsOrCuts) {
  using sp::test::kSqlPlainFragments;
  using sp::test::kSqlSecretFragments;
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> coin(0, 2);
  std::uniform_int_distribution<std::size_t> pick_secret(0, kSqlSecretFragments.size() - 1);
  std::uniform_int_distribution<std::size_t> pick_plain(0, kSqlPlainFragments.size() - 1);
  std::uniform_int_distribution<int> length(1, 40);

  for (int round = 0; round < 1500; ++round) {
    std::string sql;
    const int parts = length(rng);
    for (int p = 0; p < parts; ++p) {
      sql += coin(rng) == 0 ? kSqlSecretFragments[pick_secret(rng)] : kSqlPlainFragments[pick_plain(rng)];
      sql += ' ';
    }
    for (std::size_t cut = 0; cut <= sql.size(); ++cut) {
      const std::string prefix = sql.substr(0, cut);
      const SqlFingerprint fp = fingerprint_sql(prefix, cut < sql.size());
      ASSERT_EQ(sp::test::secret_survivor(fp), "") << "survived in: " << fp.text << "\ninput: " << prefix;
      ASSERT_TRUE(sp::test::fingerprint_invariant_failure(fp).empty())
          << sp::test::fingerprint_invariant_failure(fp) << ": " << fp.text << "\ninput: " << prefix;
    }
  }
}

TEST(SqlFingerprintProperty, ArbitraryBytesKeepTheInvariants) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> size(0, 300);
  const std::string alphabet = "'\"$-/*\\E(),;:.0123456789xX_abc \n";
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  for (int round = 0; round < 5000; ++round) {
    std::string s(static_cast<std::size_t>(size(rng)), '\0');
    for (char& c : s) c = round % 2 ? static_cast<char>(byte(rng)) : alphabet[pick(rng)];
    expect_invariants(fingerprint_sql(s, round % 3 == 0), "random input");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rules, one by one

TEST(SqlFingerprint, EveryKindOfLiteralBecomesAPlaceholder) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"SELECT 'a''b'", "select ?"},
      {"SELECT E'a\\'b\\\\'", "select ?"},
      {"SELECT e'x'", "select ?"},
      {"SELECT B'0101', X'1F', N'nat'", "select ?, ?, ?"},
      {"SELECT U&'d\\0061t' UESCAPE '!'", "select ? uescape ?"},
      {"SELECT $$a'b$$, $x$ $$ $x$, $a$ $ab$ $a$", "select ?, ?, ?"},
      {"SELECT 1, 1.5, .5, 1., 4.5e10, 6E-3, 0x1F, 0o7, 0b1, 1_000", "select ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"},
      {"SELECT 123abc", "select ?"},
      {"SELECT '\\x0123'::bytea, E'\\\\x0123'::bytea", "select ?::bytea, ?::bytea"},
      {"SELECT 'a'\n  'b', 'c' 'd'", "select ?, ? ?"},  // continuation needs a newline
      {"SELECT TRUE, false, NULL, DEFAULT", "select ?, ?, null, default"},
      {"SELECT x IS TRUE, y IS NOT FALSE", "select x is true, y is not false"},
      {"SELECT $1, $2::text", "select ?, ?::text"},
      {"SELECT interval '1 day', DATE '2020-01-01'", "select interval ?, date ?"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(fingerprint_sql(in).text, want) << in;
}

TEST(SqlFingerprint, SignsJoinTheirNumbers) {
  EXPECT_EQ(fingerprint_sql("SELECT -1, +2 WHERE x = -3 AND y>-4 AND z = - 5").text,
            "select ?, ? where x = ? and y > ? and z = ?");
  EXPECT_EQ(fingerprint_sql("SELECT a - 1, a-1, (b) - 2, c.d -3").text, "select a - ?, a - ?, (b) - ?, c.d - ?");
  // psycopg2 writes negative numbers with a leading space.
  EXPECT_EQ(fingerprint_sql("VALUES ( -45000000000.0, -1)").text, fingerprint_sql("VALUES (1, 2)").text);
}

TEST(SqlFingerprint, LayoutCaseAndCommentsDoNotMatter) {
  const auto a = fingerprint_sql("SELECT  event_id\n\tFROM Events WHERE room_id='!a:b' -- hi\n;");
  const auto b = fingerprint_sql("select event_id /* x */ from events where ROOM_ID = '!zz:example.org'");
  EXPECT_EQ(a.text, "select event_id from events where room_id = ?");
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(fingerprint_sql("SELECT \"Mixed\"\"Case\" FROM \"user\"").text, "select \"Mixed\"\"Case\" from \"user\"");
  EXPECT_EQ(fingerprint_sql("SELECT 1 /* a /* b */ still */ FROM t").text, "select ? from t");
  EXPECT_EQ(fingerprint_sql("SELECT a=-- c\n1").text, "select a = ?");  // an operator stops at a comment
  EXPECT_EQ(fingerprint_sql("SELECT count(*), coalesce(a, 1) FROM t WHERE EXISTS (SELECT 1)").text,
            "select count(*), coalesce(a, ?) from t where exists (select ?)");
}

TEST(SqlFingerprint, ListsCollapseWhateverTheirLength) {
  const auto one = fingerprint_sql("SELECT a FROM t WHERE b IN ('x')");
  const auto three = fingerprint_sql("SELECT a FROM t WHERE b IN ('x', 'y', 'z')");
  EXPECT_EQ(one.text, "select a from t where b in (...)");
  EXPECT_EQ(one.id, three.id);
  EXPECT_EQ(fingerprint_sql("SELECT a FROM t WHERE b NOT IN (1, -2, NULL)").text, "select a from t where b not in (...)");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM t WHERE (b, c) IN ((1, 'x'), (2, 'y'))").text,
            "select a from t where (b, c) in (...)");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM t WHERE b IN ('x'::text, 'y'::text)").text, "select a from t where b in (...)");
  // Not constants: kept.
  EXPECT_EQ(fingerprint_sql("SELECT a FROM t WHERE b IN (SELECT c FROM u)").text,
            "select a from t where b in (select c from u)");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM t WHERE b IN (c, 1)").text, "select a from t where b in (c, ?)");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM t WHERE b = ANY(ARRAY['x','y'])").id,
            fingerprint_sql("SELECT a FROM t WHERE b = ANY(ARRAY['x'])").id);
  EXPECT_EQ(fingerprint_sql("SELECT ARRAY[ARRAY[1,2],ARRAY[3,4]], ARRAY[a, 1]").text, "select array[...], array[a, ?]");
  EXPECT_EQ(fingerprint_sql("SELECT a = ANY('{x,y}')").text, "select a = any(?)");
}

TEST(SqlFingerprint, ValuesRowsCollapseToTheFirst) {
  const auto one = fingerprint_sql("INSERT INTO t (a, b) VALUES (1, 'x')");
  const auto many = fingerprint_sql("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'),(3,'z')");
  EXPECT_EQ(one.text, "insert into t (a, b) values (?, ?)");
  EXPECT_EQ(many.text, "insert into t (a, b) values (?, ?), ...");
  EXPECT_EQ(fingerprint_sql("INSERT INTO t VALUES (1, now()), (2, now()) ON CONFLICT (a) DO NOTHING").text,
            "insert into t values (?, now()), ... on conflict (a) do nothing");
  EXPECT_EQ(fingerprint_sql("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s)").text,
            "select * from (values (?, ?), ...) as v(n, s)");
}

TEST(SqlFingerprint, StatementsAndRepeats) {
  EXPECT_EQ(fingerprint_sql("BEGIN; SELECT 1; COMMIT;").text, "begin; select ?; commit");
  EXPECT_EQ(fingerprint_sql(";;SELECT 1;;").text, "select ?");
  EXPECT_EQ(fingerprint_sql("UPDATE t SET a = 1 WHERE b = 2; UPDATE t SET a = 3 WHERE b = 4; SELECT 1").text,
            "update t set a = ? where b = ?; ...; select ?");
  EXPECT_EQ(fingerprint_sql("").text, "");
  EXPECT_EQ(fingerprint_sql("  -- nothing\n").text, "");
}

TEST(SqlFingerprint, Verbs) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"select 1", "SELECT"},
      {"(SELECT a FROM t) UNION SELECT 1", "SELECT"},
      {"INSERT INTO t VALUES (1)", "INSERT"},
      {"update t set a = 1", "UPDATE"},
      {"DELETE FROM t", "DELETE"},
      {"WITH x AS (SELECT 1) SELECT * FROM x", "SELECT"},
      {"WITH x AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM x", "INSERT"},
      {"WITH RECURSIVE x(n) AS NOT MATERIALIZED (SELECT 1), y AS (SELECT 2) UPDATE t SET a = 1", "UPDATE"},
      {"BEGIN", "BEGIN"},
      {"begin isolation level repeatable read", "BEGIN"},
      {"START TRANSACTION", "BEGIN"},
      {"COMMIT", "COMMIT"},
      {"END", "COMMIT"},
      {"COMMIT PREPARED 'x'", "COMMIT"},
      {"ROLLBACK", "ROLLBACK"},
      {"ABORT", "ROLLBACK"},
      {"ROLLBACK TO SAVEPOINT s", "other"},
      {"ROLLBACK WORK TO s", "other"},
      {"SAVEPOINT s", "other"},
      {"RELEASE SAVEPOINT s", "other"},
      {"EXPLAIN SELECT 1", "other"},
      {"SET statement_timeout = 0", "other"},
      {"LOCK TABLE t", "other"},
      {"COPY t FROM STDIN", "other"},
      {"VALUES (1)", "other"},
      {"START", "other"},
      {"", "other"},
      {"'just a literal'", "other"},
      {"WITH broken", "other"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(fingerprint_sql(in).verb, want) << in;
}

TEST(SqlFingerprint, Tables) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"SELECT a FROM events WHERE x = 1", "events"},
      {"SELECT a FROM public.events", "events"},
      {"SELECT a FROM ONLY events", "events"},
      {"SELECT a FROM \"Events\"", "events"},
      {"SELECT a FROM \"we ird\"", "other"},
      {"SELECT a FROM caf\xc3\xa9", "other"},
      {"SELECT a FROM " + std::string(64, 'a'), "other"},
      {"SELECT a FROM " + std::string(63, 'a'), std::string(63, 'a')},
      {"SELECT extract(epoch from ts) FROM t", "t"},
      {"SELECT (SELECT max(x) FROM inner_t) FROM outer_t", "outer_t"},
      {"SELECT a IS DISTINCT FROM b FROM t", "t"},
      {"SELECT * FROM (SELECT * FROM (SELECT * FROM deep) a) b", "deep"},
      {"SELECT * FROM (events e JOIN rooms r USING (room_id))", "events"},
      {"SELECT * FROM generate_series(1, 10) AS g, events", "events"},
      {"SELECT * FROM unnest(ARRAY[1]) u LEFT JOIN rooms r ON true", "rooms"},
      {"SELECT * FROM unnest(ARRAY[1]) u WHERE x IN (SELECT 1 FROM z)", ""},
      {"SELECT now()", ""},
      {"INSERT INTO public.access_tokens (id) VALUES (1)", "access_tokens"},
      {"UPDATE ONLY users SET a = 1", "users"},
      {"DELETE FROM ONLY users", "users"},
      {"WITH x AS (SELECT * FROM rooms) SELECT * FROM x", "rooms"},
      {"WITH x AS (SELECT * FROM y), y AS (SELECT * FROM rooms) SELECT * FROM x", "rooms"},
      {"WITH x AS (SELECT 1) SELECT * FROM events", "events"},
      {"LOCK TABLE ONLY event_push_summary IN EXCLUSIVE MODE", "event_push_summary"},
      {"TRUNCATE events", "events"},
      {"BEGIN", ""},
      {"SELECT * FROM", ""},
      {"INSERT INTO", ""},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(fingerprint_sql(in).table, want) << in;
}

TEST(SqlFingerprint, IdIsPinnedFnv1a) {
  EXPECT_EQ(sp::sql_fingerprint_id(""), 14695981039346656037ULL);
  EXPECT_EQ(sp::sql_fingerprint_id("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(sp::sql_fingerprint_id("foobar"), 0x85944171f73967e8ULL);
  const auto fp = fingerprint_sql("SELECT event_id FROM events WHERE room_id = '!x:y'");
  EXPECT_EQ(fp.text, "select event_id from events where room_id = ?");
  EXPECT_EQ(fp.id, 0x1cf3f2dd08ea966aULL);
}

TEST(SqlFingerprint, NulEndsTheStatement) {
  const std::string sql("SELECT a FROM t WHERE b = 'x'\0 AND c = 'zqxj", 43);
  const auto fp = fingerprint_sql(sql, true);
  EXPECT_EQ(fp.text, "select a from t where b = ?");
  EXPECT_FALSE(fp.truncated);
}

TEST(SqlFingerprint, UnterminatedThingsAreDroppedAndFlagged) {
  for (const std::string in : {"SELECT 'zqxj", "SELECT E'zqxj\\", "SELECT $t$zqxj", "SELECT \"zqxj", "SELECT /* zqxj",
                               "SELECT U&\"zqxj", "SELECT 'a'\n'zqxj"}) {
    const auto fp = fingerprint_sql(in);  // not flagged: found out
    EXPECT_TRUE(fp.truncated) << in;
    EXPECT_EQ(fp.text.find("zqxj"), std::string::npos) << fp.text;
    EXPECT_TRUE(fp.text.ends_with(sp::kSqlTruncatedMarker)) << fp.text;
  }
  EXPECT_EQ(fingerprint_sql("SELECT 'zqxj").text, "select ? /* truncated */");
  EXPECT_EQ(fingerprint_sql("/* zqxj").text, "/* truncated */");
}

TEST(SqlFingerprint, CutInputsDropTheirLastWordAndStayStable) {
  EXPECT_EQ(fingerprint_sql("SELECT a FROM events WHERE room_i", true).text,
            "select a from events where /* truncated */");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM events WHERE room_i", false).text, "select a from events where room_i");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM events WHERE x <", true).text, "select a from events where x /* truncated */");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM events WHERE x = 12", true).text,
            "select a from events where x = ? /* truncated */");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM events WHERE x = $ta", true).text,
            "select a from events where x = /* truncated */");
  EXPECT_EQ(fingerprint_sql("SELECT a FROM events ", true).text, "select a from events /* truncated */");

  // Every cut inside a long IN list gives one fingerprint.
  std::string sql = "SELECT event_id FROM events WHERE event_id IN (";
  const std::size_t list_start = sql.size();
  for (int i = 0; i < 50; ++i) sql += (i ? ", '$event" : "'$event") + std::to_string(i) + ":example.org'";
  sql += ")";
  std::set<std::string> texts;
  for (std::size_t cut = list_start; cut < sql.size(); ++cut) texts.insert(fingerprint_sql(sql.substr(0, cut), true).text);
  EXPECT_EQ(texts, std::set<std::string>{"select event_id from events where event_id in (... /* truncated */"});

  // Every cut inside the third and later statements of a batch gives one fingerprint too.
  std::string batch;
  for (int i = 0; i < 5; ++i) batch += "UPDATE t SET a = " + std::to_string(i) + " WHERE b = 'k" + std::to_string(i) + "';";
  texts.clear();
  for (std::size_t cut = batch.find("UPDATE", batch.find("UPDATE", 1) + 1) + 1; cut < batch.size(); ++cut) {
    texts.insert(fingerprint_sql(batch.substr(0, cut), true).text);
  }
  EXPECT_EQ(texts, std::set<std::string>{"update t set a = ? where b = ?; ... /* truncated */"});
}

TEST(SqlFingerprint, TextIsCappedAtATokenBoundary) {
  std::string sql = "SELECT ";
  for (int i = 0; i < 400; ++i) sql += (i ? ", column_" : "column_") + std::to_string(i);
  sql += " FROM events";
  const auto fp = fingerprint_sql(sql);
  EXPECT_TRUE(fp.truncated);
  EXPECT_LE(fp.text.size(), sp::kSqlFingerprintMaxText);
  EXPECT_GT(fp.text.size(), sp::kSqlFingerprintMaxText - 40);
  EXPECT_TRUE(fp.text.ends_with(sp::kSqlTruncatedMarker)) << fp.text;
  const std::string body = fp.text.substr(0, fp.text.size() - sp::kSqlTruncatedMarker.size());
  EXPECT_TRUE(body.ends_with(",") || body.back() != ' ') << body;
  EXPECT_EQ(sql.find(body.substr(body.rfind(' ') + 1)) != std::string::npos, true);
  EXPECT_EQ(fp.table, "events");  // analysis sees the whole statement

  const auto huge_word = fingerprint_sql("SELECT " + std::string(5000, 'w'));
  EXPECT_EQ(huge_word.text, "select /* truncated */");
}

TEST(SqlFingerprint, BadBytesGiveValidUtf8) {
  const auto fp = fingerprint_sql("SELECT caf\xc3\xa9, b\xff\xfe, \"q\x01\xc3\" FROM t WHERE x = '\xff\xfe zqxj'");
  EXPECT_EQ(fp.text, "select caf\xc3\xa9, b\xef\xbf\xbd\xef\xbf\xbd, \"q\xef\xbf\xbd\xef\xbf\xbd\" from t where x = ?");
  EXPECT_TRUE(sp::test::valid_utf8(fp.text));
}

TEST(SqlFingerprint, PathologicalInputsFinish) {
  // Deep nesting, many dollar signs, long operators: linear scans, bounded recursion, no stack exhaustion.
  const std::size_t n = 200000;
  for (const std::string& s : {std::string(n, '('), std::string(n, ')'), "SELECT * FROM " + std::string(n, '('),
                                "$a$" + std::string(n, '$'), "$" + std::string(n, 'a') + "$x", std::string(n, '-') + "+",
                                "=" + std::string(n, '+'), std::string(n, '\''), "/*" + std::string(n, '/') + "*",
                                "WITH " + std::string(n / 10, 'x') + " AS (" + std::string(n, '(')}) {
    expect_invariants(fingerprint_sql(s), "pathological");
    expect_invariants(fingerprint_sql(s, true), "pathological");
  }
}

// sql_verb's shortcut must never disagree with the full analysis: every golden file, every prefix of it (flagged
// as cut and not), and statements made to sit on the shortcut's edges.
TEST(SqlVerb, AgreesWithTheFingerprintEverywhere) {
  std::vector<std::string> inputs = {
      "SELECT 1", "select\t1", "SeLeCt(1)", "select*from t", "selectx from t", "select", "select;", "SELECT1",
      "  \n\fUPDATE t SET a = 1", "update_log", "INSERT INTO t VALUES (1)", "insert", "DELETE FROM t", "deleted",
      "BEGIN", "begin;", "BEGIN ISOLATION LEVEL SERIALIZABLE", "START TRANSACTION", "COMMIT", "end", "END;",
      "endx", "ROLLBACK", "ROLLBACK TO SAVEPOINT s", "abort", "WITH x AS (SELECT 1) DELETE FROM t", "(SELECT 1)",
      "-- c\nSELECT 1", "/* c */ SELECT 1", "select/* c */1", "select-1", "E'x' select", "sélect 1", "select$1",
      "select\v1", "\x01select 1", "SELECT\0garbage", std::string("SELECT\0 1", 9), "", " ", "s", "commit_ts",
      "UPDATE", "update\r\nt set a=1",
  };
  for (const auto& entry : std::filesystem::directory_iterator(kSqlData)) {
    if (entry.path().extension() != ".sql") continue;
    const std::string sql = read_file(entry.path().string());
    for (std::size_t cut = 0; cut <= sql.size(); cut += cut < 512 ? 1 : 61) inputs.push_back(sql.substr(0, cut));
  }
  std::size_t shortcut = 0;
  for (const auto& in : inputs) {
    for (const bool cut : {false, true}) {
      const std::string expected = fingerprint_sql(in, cut).verb;
      EXPECT_EQ(sql_verb(in, cut), expected) << "\"" << in << "\" cut=" << cut;
      shortcut += expected != "other" ? 1 : 0;
    }
  }
  EXPECT_GT(shortcut, 1000u);  // the edges above, and most prefixes of the golden statements, have a verb
}
