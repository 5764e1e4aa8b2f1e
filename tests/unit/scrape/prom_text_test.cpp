// The Prometheus text parser on real prometheus_client output (tests/data/prom/workload.txt, scraped from the test
// workload), on a hand-written Synapse-style exposition with every feature the format has, and on broken input:
// every error case with its exact message, every limit, and random bytes.
#include "core/scrape/prom_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>

namespace sp::prom {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using namespace std::string_literals;

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(SP_TEST_DATA_DIR) + "/prom/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const Family* find_family(const std::vector<Family>& families, std::string_view name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

ParseResult parse_ok(std::string_view text, const ParseLimits& limits = {}) {
  ParseResult r = parse_prometheus_text(text, limits);
  EXPECT_TRUE(r.ok()) << r.error << "\n--- input:\n" << text;
  return r;
}

std::string parse_error(std::string_view text, const ParseLimits& limits = {}) {
  const ParseResult r = parse_prometheus_text(text, limits);
  EXPECT_FALSE(r.ok()) << "parsed:\n" << text;
  EXPECT_THAT(r.families, IsEmpty());
  return r.error;
}

TEST(PromText, WorkloadScrape) {
  const ParseResult r = parse_ok(read_data("workload.txt"));
  ASSERT_TRUE(r.ok());
  const Family* gc = find_family(r.families, "python_gc_time");
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->type, "histogram");
  EXPECT_EQ(gc->help, "Time taken to GC (sec)");
  ASSERT_EQ(gc->samples.size(), 3u * (17 + 2));  // 16 bounds + +Inf, _count, _sum per generation
  EXPECT_EQ(gc->samples[0].name, "python_gc_time_bucket");
  EXPECT_THAT(gc->samples[0].labels, ElementsAre(Pair("gen", "0"), Pair("le", "0.0025")));
  EXPECT_EQ(gc->samples[16].labels[1].second, "+Inf");
  EXPECT_EQ(gc->samples[17].name, "python_gc_time_count");
  EXPECT_EQ(gc->samples[18].name, "python_gc_time_sum");
  EXPECT_EQ(gc->samples[16].value, gc->samples[17].value);

  const Family* created = find_family(r.families, "python_gc_time_created");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->type, "gauge");
  EXPECT_EQ(created->samples.size(), 3u);
  EXPECT_GT(created->samples[0].value, 1.6e9);

  // Declared, nothing observed yet (no database in that run): kept, empty.
  const Family* query = find_family(r.families, "synapse_storage_query_time");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->type, "histogram");
  EXPECT_THAT(query->samples, IsEmpty());
  const Family* txn = find_family(r.families, "synapse_storage_transaction_time_count_total");
  ASSERT_TRUE(txn);
  EXPECT_EQ(txn->type, "counter");

  const Family* info = find_family(r.families, "python_info");
  ASSERT_TRUE(info);
  ASSERT_EQ(info->samples.size(), 1u);
  EXPECT_EQ(info->samples[0].labels.size(), 5u);
  EXPECT_EQ(info->samples[0].value, 1.0);

  for (const auto& f : r.families) {
    EXPECT_FALSE(f.help.empty()) << f.name;  // prometheus_client writes HELP for everything
    for (const auto& s : f.samples) EXPECT_FALSE(s.timestamp_ms) << s.name;
  }
  EXPECT_EQ(r.families.front().name, "python_gc_objects_collected_total");  // input order
  EXPECT_EQ(r.families.back().name, "python_gc_counts");
}

TEST(PromText, SynapseStyleExposition) {
  const ParseResult r = parse_ok(read_data("synapse_style.txt"));
  ASSERT_TRUE(r.ok());

  const Family* gc = find_family(r.families, "python_gc_time");
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->samples.size(), 2u * 19);
  EXPECT_DOUBLE_EQ(gc->samples[18].value, 41.83127402700001);
  EXPECT_EQ(find_family(r.families, "python_gc_time_created")->samples.size(), 2u);

  const Family* count_total = find_family(r.families, "synapse_storage_transaction_time_count_total");
  ASSERT_TRUE(count_total);
  EXPECT_EQ(count_total->type, "counter");
  ASSERT_EQ(count_total->samples.size(), 2u);
  EXPECT_THAT(count_total->samples[1].labels,
              ElementsAre(Pair("desc", "persist_events"), Pair("server_name", "example.org")));
  EXPECT_EQ(count_total->samples[1].value, 40122.0);

  const Family* query = find_family(r.families, "synapse_storage_query_time");
  ASSERT_TRUE(query);
  ASSERT_EQ(query->samples.size(), 5u);
  EXPECT_THAT(query->samples[0].labels,
              ElementsAre(Pair("le", "0.001"), Pair("server_name", "example.org"), Pair("verb", "SELECT")));

  const Family* blocks = find_family(r.families, "synapse_util_metrics_block_count_total");
  ASSERT_TRUE(blocks);
  EXPECT_EQ(blocks->help, "Block metrics: a help text with a backslash \\ (C:\\synapse) and\na second line");
  ASSERT_EQ(blocks->samples.size(), 4u);
  EXPECT_EQ(blocks->samples[0].labels[0].second, "room \"#matrix:example.org\" backfill");
  EXPECT_EQ(blocks->samples[1].labels[0].second, "path C:\\media\\store");
  EXPECT_EQ(blocks->samples[2].labels[0].second, "line one\nline two");
  EXPECT_EQ(blocks->samples[3].labels[0].second, "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x8d");

  const Family* ratio = find_family(r.families, "synapse_util_caches_cache_hit_ratio");
  ASSERT_TRUE(ratio);
  ASSERT_EQ(ratio->samples.size(), 4u);
  EXPECT_TRUE(std::isnan(ratio->samples[1].value));
  EXPECT_EQ(ratio->samples[2].value, std::numeric_limits<double>::infinity());
  EXPECT_EQ(ratio->samples[3].value, -std::numeric_limits<double>::infinity());

  const Family* summary = find_family(r.families, "synapse_background_process_db_txn_duration_seconds");
  ASSERT_TRUE(summary);
  EXPECT_EQ(summary->type, "summary");
  ASSERT_EQ(summary->samples.size(), 2u);  // prometheus_client summaries have no quantiles
  EXPECT_EQ(summary->samples[0].name, "synapse_background_process_db_txn_duration_seconds_count");
  EXPECT_EQ(find_family(r.families, "synapse_background_process_db_txn_duration_seconds_created")->type, "gauge");

  const Family* pdu = find_family(r.families, "synapse_federation_client_sent_pdu_time");
  ASSERT_TRUE(pdu);
  ASSERT_EQ(pdu->samples.size(), 2u);
  EXPECT_EQ(pdu->samples[0].timestamp_ms, 1700123999000);
  EXPECT_EQ(pdu->samples[1].timestamp_ms, -3982045);
  EXPECT_DOUBLE_EQ(pdu->samples[1].value, 0.0015);

  const Family* legacy = find_family(r.families, "synapse_untyped_legacy_total");
  ASSERT_TRUE(legacy);
  EXPECT_EQ(legacy->type, "untyped");
  EXPECT_EQ(legacy->help, "");
  ASSERT_EQ(legacy->samples.size(), 2u);
  EXPECT_THAT(legacy->samples[0].labels, IsEmpty());
  EXPECT_EQ(legacy->samples[1].value, 7.0);
  const Family* declared = find_family(r.families, "synapse_declared_untyped");
  ASSERT_TRUE(declared);
  EXPECT_EQ(declared->type, "untyped");
  EXPECT_EQ(declared->samples[0].value, 1000.0);

  EXPECT_EQ(find_family(r.families, "process_start_time_seconds")->samples[0].value, 1.70012345678e+09);
  EXPECT_EQ(find_family(r.families, "process_max_fds")->samples[0].value, 1048576.0);
}

TEST(PromText, Whitespace) {
  const ParseResult r = parse_ok(
      "\n   \n\t# HELP  a \t first help\n  # TYPE\ta\tgauge  \n"
      "  a { x = \"1\" , y=\"2\" , } \t 3 \t 1000 \t\n"
      "a{x=\"2\",} 4\n"
      "a{} 5\n"
      "a{x=\"3\"}6\n"
      "a 7\n"
      "\n");
  ASSERT_EQ(r.families.size(), 1u);
  const Family& a = r.families[0];
  EXPECT_EQ(a.help, "first help");
  EXPECT_EQ(a.type, "gauge");
  ASSERT_EQ(a.samples.size(), 5u);
  EXPECT_THAT(a.samples[0].labels, ElementsAre(Pair("x", "1"), Pair("y", "2")));
  EXPECT_EQ(a.samples[0].value, 3.0);
  EXPECT_EQ(a.samples[0].timestamp_ms, 1000);
  EXPECT_THAT(a.samples[1].labels, ElementsAre(Pair("x", "2")));
  EXPECT_THAT(a.samples[2].labels, IsEmpty());
  EXPECT_EQ(a.samples[3].value, 6.0);
  EXPECT_EQ(a.samples[4].value, 7.0);
}

TEST(PromText, EmptyAndCommentOnlyInput) {
  EXPECT_THAT(parse_ok("").families, IsEmpty());
  EXPECT_THAT(parse_ok("\n\n  \n").families, IsEmpty());
  EXPECT_THAT(parse_ok("# just a comment\n#\n# HELP\n# TYPE\n#HELPLESS x y\n").families, IsEmpty());
  EXPECT_THAT(parse_ok("   ").families, IsEmpty());  // blanks without a line feed: nothing was cut
}

TEST(PromText, Values) {
  const auto value = [](std::string_view token) { return parse_float(token); };
  EXPECT_EQ(value("1"), 1.0);
  EXPECT_EQ(value("-1.5"), -1.5);
  EXPECT_EQ(value("+2"), 2.0);
  EXPECT_EQ(value(".5"), 0.5);
  EXPECT_EQ(value("5."), 5.0);
  EXPECT_EQ(value("1e3"), 1000.0);
  EXPECT_EQ(value("1.5E-3"), 0.0015);
  EXPECT_EQ(value("1.7954336257114234e+09"), 1.7954336257114234e+09);
  EXPECT_EQ(value("1e-400"), 0.0);  // underflow: 0, as Go
  EXPECT_EQ(value("-1e-400"), 0.0);
  EXPECT_TRUE(std::signbit(*value("-1e-400")));
  EXPECT_EQ(value("0." + std::string(400, '0') + "1"), 0.0);
  EXPECT_EQ(value(std::string(400, '9')), std::nullopt);
  EXPECT_EQ(value("+Inf"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(value("-Inf"), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(value("inf"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(value("Infinity"), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(*value("NaN")));
  EXPECT_TRUE(std::isnan(*value("nan")));
  for (const char* bad : {"", "+", "-", ".", "e5", "1e", "1e+", "1.2.3", "0x1p-2", "1_000", "--1", "+-1", "1e999",
                          "-1e999", "+NaN", "-nan", "Infinit", "NaNa", "1,5", "1 ", " 1", "١"}) {
    EXPECT_FALSE(value(bad)) << bad;
  }
}

TEST(PromText, Timestamps) {
  const ParseResult r = parse_ok("a 1 0\na 1 -5\na 1 +7\na 1 9223372036854775807\na 1 -9223372036854775808\n");
  ASSERT_EQ(r.families.size(), 1u);
  const auto& s = r.families[0].samples;
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].timestamp_ms, 0);
  EXPECT_EQ(s[1].timestamp_ms, -5);
  EXPECT_EQ(s[2].timestamp_ms, 7);
  EXPECT_EQ(s[3].timestamp_ms, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(s[4].timestamp_ms, std::numeric_limits<std::int64_t>::min());
}

TEST(PromText, FamilyResolution) {
  const ParseResult r = parse_ok(
      "# TYPE h histogram\n"
      "h_bucket{le=\"1\"} 1\n"
      "h_bucket{le=\"+Inf\"} 2\n"
      "h_sum 3\n"
      "h_count 2\n"
      "# TYPE s summary\n"
      "s{quantile=\"0.5\"} 1\n"
      "s{quantile=\"0.99\"} 2\n"
      "s_sum 3\n"
      "s_count 4\n"
      "s_bucket 5\n"           // not a summary suffix: its own untyped family
      "# TYPE c_count counter\n"
      "c_count 1\n"
      "h_count 7\n"            // a split family: merged by name, as Prometheus does
      "# TYPE OM unknown\n"    // OpenMetrics' word: kept as untyped
      "OM 1\n"
      "# TYPE g GAUGE\n"
      "g 1\n");
  const auto& f = r.families;
  ASSERT_EQ(f.size(), 6u);
  EXPECT_EQ(f[0].name, "h");
  EXPECT_EQ(f[0].samples.size(), 5u);
  EXPECT_EQ(f[0].samples[4].value, 7.0);
  EXPECT_EQ(f[1].name, "s");
  EXPECT_EQ(f[1].samples.size(), 4u);
  EXPECT_EQ(f[2].name, "s_bucket");
  EXPECT_EQ(f[2].type, "untyped");
  EXPECT_EQ(f[3].name, "c_count");
  EXPECT_EQ(f[3].type, "counter");
  EXPECT_EQ(f[4].type, "untyped");
  EXPECT_EQ(f[5].type, "gauge");

  // Samples before the TYPE line of their stem are untyped families of their own name.
  const ParseResult early = parse_ok("x_sum 1\n# TYPE x summary\nx_count 2\nx_sum 3\n");
  ASSERT_EQ(early.families.size(), 2u);
  EXPECT_EQ(early.families[0].name, "x_sum");
  EXPECT_EQ(early.families[0].samples.size(), 2u);
  EXPECT_EQ(early.families[1].name, "x");
  EXPECT_EQ(early.families[1].samples.size(), 1u);
}

struct ErrorCase {
  std::string text;
  std::string error;
};

TEST(PromText, Errors) {
  const std::vector<ErrorCase> cases = {
      {"a 1", "line 1: last line does not end in a line feed (truncated body?)"},
      {"a 1\nb{x=\"1", "line 2: last line does not end in a line feed (truncated body?)"},
      {"a{x=\"1} 2\n", "line 1: label x: unterminated label value"},
      {"a{x=\"1\\\"} 2\n", "line 1: label x: unterminated label value"},
      {"a{x=\"1\\", "line 1: last line does not end in a line feed (truncated body?)"},
      {"a{x=\"1\\\n", "line 1: label x: unterminated label value"},
      {"a{x=\"\\t\"} 1\n", "line 1: label x: invalid escape sequence \"\\\\t\" in value"},
      {"a{x=\"\xff\"} 1\n", "line 1: label x: invalid UTF-8 in value"},
      {"a{x=\"\xed\xa0\x80\"} 1\n", "line 1: label x: invalid UTF-8 in value"},  // a surrogate
      {"a{x=\"\xc0\xaf\"} 1\n", "line 1: label x: invalid UTF-8 in value"},      // overlong
      {"a{x=\"1\" 2\n", "line 1: sample a: expected ',' or '}' after the value of label x"},
      {"a{x=\"1\"\n", "line 1: sample a: unterminated label set"},
      {"a{\n", "line 1: sample a: unterminated label set"},
      {"a{x} 1\n", "line 1: sample a: expected '=' after label name x"},
      {"a{x=1} 1\n", "line 1: sample a: expected '\"' to start the value of label x"},
      {"a{,} 1\n", "line 1: sample a: expected a label name or '}' at \",} 1\""},
      {"a{x=\"1\",,} 1\n", "line 1: sample a: expected a label name or '}' at \",} 1\""},
      {"a{1x=\"1\"} 1\n", "line 1: sample a: expected a label name or '}' at \"1x=\\\"1\\\"} 1\""},
      {"a{\"x\"=\"1\"} 1\n", "line 1: sample a: quoted label names are not supported"},
      {"a{x=\"1\",x=\"2\"} 1\n", "line 1: sample a: duplicate label x"},
      {"{\"a\"} 1\n", "line 1: sample without a metric name (quoted metric names are not supported)"},
      {"1a 1\n", "line 1: invalid metric name at \"1a 1\""},
      {"a-b 1\n", "line 1: invalid character \"-\" in metric name a"},
      {"a\n", "line 1: sample a without a value"},
      {"a{x=\"1\"}\n", "line 1: sample a without a value"},
      {"a abc\n", "line 1: sample a: invalid value \"abc\""},
      {"a 1e999\n", "line 1: sample a: invalid value \"1e999\""},
      {"a 1 2.5\n", "line 1: sample a: invalid timestamp \"2.5\""},
      {"a 1 99999999999999999999\n", "line 1: sample a: invalid timestamp \"99999999999999999999\""},
      {"a 1 2 3\n", "line 1: sample a: unexpected text \"3\" after the timestamp"},
      {"a 1 # exemplar\n", "line 1: sample a: invalid timestamp \"#\""},
      {"a 1\r\n", "line 1: sample a: invalid value \"1\\x0d\""},
      {"# HELP a x\n# HELP a y\n", "line 2: second HELP line for a"},
      {"# TYPE a gauge\n# TYPE a gauge\n", "line 2: second TYPE line for a"},
      {"a 1\n# TYPE a gauge\n", "line 2: TYPE line for a after its samples"},
      {"# TYPE a\n", "line 1: TYPE line for a without a type"},
      {"# TYPE a gauge extra\n", "line 1: TYPE line for a: unexpected text after the type"},
      {"# TYPE a gau-ge\n", "line 1: TYPE line for a: invalid type \"gau-ge\""},
      {"# TYPE 0a gauge\n", "line 1: invalid metric name \"0a\" in TYPE line"},
      {"# HELP a{x} text\n", "line 1: invalid metric name \"a{x}\" in HELP line"},
      {"# HELP a bad \\t escape\n", "line 1: HELP for a: invalid escape sequence \"\\\\t\""},
      {"# HELP a trailing \\\n", "line 1: HELP for a: backslash at end of line"},
      {"# HELP a \xff\n", "line 1: HELP for a: invalid UTF-8"},
      {"# TYPE h histogram\nh 1\n", "line 2: sample h in histogram h: expected h_bucket, h_sum or h_count"},
      {"# TYPE h histogram\nh_bucket 1\n", "line 2: histogram bucket h_bucket without an le label"},
      {"# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", "line 2: histogram bucket h_bucket: invalid le \"x\""},
      {"# TYPE s summary\ns 1\n", "line 2: summary sample s without a quantile label"},
      {"# TYPE s summary\ns{quantile=\"\"} 1\n", "line 2: summary sample s: invalid quantile \"\""},
      {"ok 1\nok 2\n\n# c\nbad{\n", "line 5: sample bad: unterminated label set"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parse_error(c.text), c.error) << "input: " << c.text;
  }
  const ParseResult r = parse_prometheus_text("a 1\n\nb 2\nc{\n");
  EXPECT_EQ(r.error_line, 4u);
}

TEST(PromText, LongInputInErrorsIsCut) {
  const std::string junk = "a " + std::string(10'000, 'x') + "\x01\n";
  const std::string error = parse_error(junk);
  EXPECT_LT(error.size(), 120u) << error;
  EXPECT_EQ(error, "line 1: sample a: invalid value \"" + std::string(48, 'x') + "\"...");
}

TEST(PromText, Limits) {
  ParseLimits tiny;
  tiny.max_families = 2;
  tiny.max_samples = 3;
  tiny.max_labels_per_sample = 2;
  tiny.max_total_labels = 4;
  tiny.max_name_length = 8;
  tiny.max_label_value_length = 5;
  tiny.max_help_length = 6;

  // Exactly at every limit: fine.
  const ParseResult at = parse_ok("# HELP abcdefgh 123456\nabcdefgh{a=\"12345\",b=\"\"} 1\nx{c=\"1\",d=\"2\"} 2\nx 3\n", tiny);
  EXPECT_EQ(at.families.size(), 2u);

  EXPECT_EQ(parse_error("a 1\nb 1\nc 1\n", tiny), "line 3: more than 2 metric families");
  EXPECT_EQ(parse_error("a 1\n# TYPE b gauge\n# HELP c x\n", tiny), "line 3: more than 2 metric families");
  EXPECT_EQ(parse_error("a 1\na 1\na 1\na 1\n", tiny), "line 4: more than 3 samples");
  EXPECT_EQ(parse_error("a{x=\"1\",y=\"2\",z=\"3\"} 1\n", tiny), "line 1: sample a: more than 2 labels");
  EXPECT_EQ(parse_error("a{x=\"1\",y=\"2\"} 1\na{x=\"1\",y=\"2\"} 1\na{x=\"1\"} 1\n", tiny),
            "line 3: more than 4 labels in total");
  EXPECT_EQ(parse_error("abcdefghi 1\n", tiny), "line 1: metric name longer than 8 bytes");
  EXPECT_EQ(parse_error("# TYPE abcdefghi gauge\n", tiny), "line 1: metric name longer than 8 bytes in TYPE line");
  EXPECT_EQ(parse_error("a{abcdefghi=\"1\"} 1\n", tiny), "line 1: sample a: label name longer than 8 bytes");
  EXPECT_EQ(parse_error("a{x=\"123456\"} 1\n", tiny), "line 1: label x: value longer than 5 bytes");
  EXPECT_TRUE(parse_prometheus_text("a{x=\"\\\\\\\\\\\\\"} 1\n", tiny).ok());  // 3 bytes unescaped
  EXPECT_EQ(parse_error("# HELP a 1234567\n", tiny), "line 1: HELP for a longer than 6 bytes");

  // Defaults: a sample with thousands of labels (a hostile endpoint) stops at 64.
  std::string huge = "a{";
  for (int i = 0; i < 5000; ++i) huge += "l" + std::to_string(i) + "=\"v\",";
  huge += "} 1\n";
  EXPECT_EQ(parse_error(huge), "line 1: sample a: more than 64 labels");
  EXPECT_EQ(parse_error("a{x=\"" + std::string(5000, 'v') + "\"} 1\n"), "line 1: label x: value longer than 4096 bytes");
}

// Every prefix of a real exposition either parses or fails with a line-numbered error; nothing crashes.
TEST(PromText, EveryPrefixOfARealScrape) {
  const std::string text = read_data("synapse_style.txt");
  std::size_t ok = 0;
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    const ParseResult r = parse_prometheus_text(std::string_view(text).substr(0, cut));
    if (r.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(r.error.rfind("line ", 0), 0u) << r.error;
      EXPECT_GT(r.error_line, 0u);
    }
  }
  EXPECT_GE(ok, 100u);  // at least every cut after a line feed
}

TEST(PromText, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  const std::string alphabet = "ab_:{}=\",\\n \t#HELPTYPE0123456789.eE+-InfNa\n\xff\xc3";
  for (int round = 0; round < 20'000; ++round) {
    std::string text;
    const std::size_t len = rng() % 80;
    for (std::size_t i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
    const ParseResult r = parse_prometheus_text(text);
    if (!r.ok()) {
      EXPECT_THAT(r.families, IsEmpty());
      EXPECT_GT(r.error_line, 0u);
    }
  }
}

}  // namespace
}  // namespace sp::prom
