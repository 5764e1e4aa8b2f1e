// The exposition writer behind /metrics against prometheus-cpp's TextSerializer (what /metrics used to serve):
// byte for byte where both are right, the same series and values after parsing (the scraper's own parser) where the
// writer deliberately differs (doubles TextSerializer rounds to 16 digits, NaN's spelling, HELP escaping).
#include "exporter/text_writer.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "../../common/test_data.h"
#include "core/scrape/prom_text.h"
#include "exporter/metric_builders.h"
#include "exporter/passthrough.h"

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string writer_text(const std::vector<MetricFamily>& families) {
  std::string out;
  sp::exporter::append_text(out, families);
  return out;
}

std::string serializer_text(const std::vector<MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

using Labels = std::vector<std::pair<std::string, std::string>>;

ClientMetric series(Labels labels, std::int64_t timestamp_ms = 0) {
  ClientMetric m;
  for (auto& [k, v] : labels) m.label.push_back({k, v});
  m.timestamp_ms = timestamp_ms;
  return m;
}

// Label values that need every escape, plus bytes that need none (tab, UTF-8, braces, commas, equals signs).
const std::vector<std::string> kNastyValues = {"",        "\\",     "\"",   "\n",   "a\\\"b\nc\\n",
                                               "\t{}=,#", "é🙂", "\\\\", "\"\"", "end\\"};

// Every type, with and without labels, help and timestamps; values both texts spell alike.
std::vector<MetricFamily> varied_families() {
  std::vector<MetricFamily> out;
  const std::vector<double> values = {
      0,    -0.0, 1,       -1,   42,   0.5, 0.1, 123.456, 1e-05, 0.0001, 2.5e-07, 1e15, -999999999999999,
      1e16, 3e20, 1.5e300, kInf, -kInf};
  auto counter = family("synapse_profiler_events_total", "Events seen.", MetricType::Counter);
  auto gauge = family("synapse_profiler_value", "", MetricType::Gauge);
  auto untyped = family("some_untyped", "Untyped, as a worker may expose it.", MetricType::Untyped);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string& nasty = kNastyValues[i % kNastyValues.size()];
    auto c = series({{"worker", "w" + std::to_string(i)}, {"odd", nasty}});
    c.counter.value = values[i];
    counter.metric.push_back(c);
    auto g = series(i % 2 ? Labels{} : Labels{{"v", nasty}},
                    i % 3 == 0 ? 0 : 1700000000000 + static_cast<std::int64_t>(i) - 5);
    g.gauge.value = values[i];
    gauge.metric.push_back(g);
    auto u = series({{"a", "1"}, {"b", nasty}, {"c", "3"}}, -static_cast<std::int64_t>(i));
    u.untyped.value = values[i];
    untyped.metric.push_back(u);
  }
  out.push_back(counter);
  out.push_back(gauge);
  out.push_back(untyped);

  auto hist = family("synapse_profiler_gc_pause_seconds", "GC pauses.", MetricType::Histogram);
  const std::vector<double> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    120};
  for (int variant = 0; variant < 4; ++variant) {
    auto m = series({{"worker", kNastyValues[static_cast<std::size_t>(variant)]}, {"generation", "2"}});
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      cumulative += i * 7 + static_cast<std::size_t>(variant);
      m.histogram.bucket.push_back({cumulative, bounds[i]});
    }
    // Variant 0 has its own +Inf bucket (no extra line); 1 ends at a finite bound (the writer adds +Inf);
    // 2 has no buckets at all; 3 has no labels... but for `le`.
    if (variant == 0) m.histogram.bucket.push_back({cumulative + 3, kInf});
    if (variant == 2) m.histogram.bucket.clear();
    if (variant == 3) m.label.clear();
    m.histogram.sample_count = cumulative + 3;
    m.histogram.sample_sum = variant * 1.25;
    hist.metric.push_back(m);
  }
  out.push_back(hist);

  auto summary = family("rpc_seconds", "A summary, with\ttab in the help.", MetricType::Summary);
  for (int variant = 0; variant < 2; ++variant) {
    auto m = series(variant ? Labels{{"x", "\"q\""}} : Labels{}, variant * 12345);
    m.summary.sample_count = 10;
    m.summary.sample_sum = 2.75;
    for (double q : {0.5, 0.9, 0.99}) m.summary.quantile.push_back({q, q * 2});
    summary.metric.push_back(m);
  }
  out.push_back(summary);
  out.push_back(family("nothing_observed_yet", "A labelled family with no series.", MetricType::Counter));
  out.push_back(family("nothing_at_all", "", MetricType::Gauge));
  return out;
}

// The parsed expositions have the same families, series and labels, and `expected`'s values: exactly for
// `exact`, within TextSerializer's 16 significant digits for the other. Label values are compared as strings, except
// le and quantile which are numbers.
void expect_same_parse(const std::string& exact, const std::string& rounded) {
  auto a = sp::prom::parse_prometheus_text(exact);
  auto b = sp::prom::parse_prometheus_text(rounded);
  ASSERT_TRUE(a.ok()) << a.error;
  ASSERT_TRUE(b.ok()) << b.error;
  ASSERT_EQ(a.families.size(), b.families.size());
  auto same_number = [](double x, double y) {
    return (std::isnan(x) && std::isnan(y)) || x == y || std::fabs(x - y) <= 1e-15 * std::fabs(x);
  };
  for (std::size_t i = 0; i < a.families.size(); ++i) {
    const auto& fa = a.families[i];
    const auto& fb = b.families[i];
    EXPECT_EQ(fa.name, fb.name);
    EXPECT_EQ(fa.help, fb.help) << fa.name;
    EXPECT_EQ(fa.type, fb.type) << fa.name;
    ASSERT_EQ(fa.samples.size(), fb.samples.size()) << fa.name;
    for (std::size_t j = 0; j < fa.samples.size(); ++j) {
      const auto& sa = fa.samples[j];
      const auto& sb = fb.samples[j];
      EXPECT_EQ(sa.name, sb.name);
      EXPECT_EQ(sa.timestamp_ms, sb.timestamp_ms) << sa.name;
      EXPECT_TRUE(same_number(sa.value, sb.value)) << sa.name << " " << sa.value << " vs " << sb.value;
      ASSERT_EQ(sa.labels.size(), sb.labels.size()) << sa.name;
      for (std::size_t k = 0; k < sa.labels.size(); ++k) {
        EXPECT_EQ(sa.labels[k].first, sb.labels[k].first);
        if (sa.labels[k].first == "le" || sa.labels[k].first == "quantile") {
          EXPECT_TRUE(
              same_number(*sp::prom::parse_float(sa.labels[k].second), *sp::prom::parse_float(sb.labels[k].second)))
              << sa.labels[k].second << " vs " << sb.labels[k].second;
        } else {
          EXPECT_EQ(sa.labels[k].second, sb.labels[k].second);
        }
      }
    }
  }
}

}  // namespace

TEST(TextWriter, ByteIdenticalToTextSerializerOnEveryTypeAndNastyLabels) {
  const auto families = varied_families();
  const std::string text = writer_text(families);
  EXPECT_EQ(text, serializer_text(families));
  // The writer's own text parses back (the escapes are the format's) with the label values it was given.
  auto parsed = sp::prom::parse_prometheus_text(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  ASSERT_EQ(parsed.families.size(), families.size());
  EXPECT_EQ(parsed.families[0].samples[2].labels[1].second, kNastyValues[2]);
  EXPECT_EQ(parsed.families[0].samples[4].labels[1].second, kNastyValues[4]);
}

TEST(TextWriter, AppendsAndToTextIsTheWriter) {
  const auto families = varied_families();
  std::string out = "kept\n";
  sp::exporter::append_text(out, families);
  EXPECT_EQ(out, "kept\n" + serializer_text(families));
  EXPECT_EQ(sp::exporter::to_text(families), serializer_text(families));
}

TEST(TextWriter, EveryDoubleRoundTripsExactly) {
  // Random bit patterns (every exponent, subnormals) and random short decimals (what clients mostly produce).
  std::mt19937_64 rng(9);
  std::vector<double> values;
  while (values.size() < 20000) {
    const double v = std::bit_cast<double>(rng());
    if (std::isfinite(v)) values.push_back(v);
  }
  std::uniform_int_distribution<int> digits(0, 9999999), exponent(-12, 12);
  for (int i = 0; i < 20000; ++i) values.push_back(digits(rng) * std::pow(10.0, exponent(rng)));
  for (double v : {0.30000000000000004, std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
                   std::numeric_limits<double>::denorm_min(), 9007199254740993.0, 1e16 - 2, 1e16 + 2, 1.0 / 3}) {
    values.push_back(v);
  }

  auto gauges = family("g", "", MetricType::Gauge);
  auto hist = family("h", "", MetricType::Histogram);
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto m = series({{"i", std::to_string(i)}});
    m.gauge.value = values[i];
    gauges.metric.push_back(m);
  }
  auto h = series({});
  for (std::size_t i = 0; i < 200; ++i) h.histogram.bucket.push_back({i, std::fabs(values[i]) * (i + 1)});
  h.histogram.sample_sum = values[7];
  hist.metric.push_back(h);
  const std::vector<MetricFamily> families = {gauges, hist};

  const std::string text = writer_text(families);
  auto parsed = sp::prom::parse_prometheus_text(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  ASSERT_EQ(parsed.families[0].samples.size(), values.size());
  std::size_t serializer_lost = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(std::bit_cast<std::uint64_t>(parsed.families[0].samples[i].value),
              std::bit_cast<std::uint64_t>(values[i]))
        << values[i];
  }
  const auto& buckets = parsed.families[1].samples;
  for (std::size_t i = 0; i < 200; ++i) {
    EXPECT_EQ(*sp::prom::parse_float(buckets[2 + i].labels[0].second), h.histogram.bucket[i].upper_bound);
  }
  // TextSerializer's 16 digits: the same series, values equal within its rounding (the largest doubles, which
  // round up past DBL_MAX, are left out: its text for them does not parse).
  std::vector<MetricFamily> parseable = families;
  std::erase_if(parseable[0].metric,
                [](const ClientMetric& m) { return std::fabs(m.gauge.value) > 1.7976931348623e308; });
  const std::string theirs = serializer_text(parseable);
  expect_same_parse(writer_text(parseable), theirs);
  const auto theirs_parsed = sp::prom::parse_prometheus_text(theirs);
  for (const auto& s : theirs_parsed.families[0].samples) {
    serializer_lost += s.value != values[std::stoul(s.labels[0].second)];
  }
  // Random bit patterns need 17 digits for about half of them: TextSerializer changed those values.
  EXPECT_GT(serializer_lost, 1000u);
}

TEST(TextWriter, SpecialFloatsAreSpelledAsPrometheusDoes) {
  auto g = family("g", "", MetricType::Gauge);
  for (double v : {std::nan(""), kInf, -kInf, -0.0}) {
    auto m = series({});
    m.gauge.value = v;
    g.metric.push_back(m);
  }
  EXPECT_EQ(writer_text({g}), "# TYPE g gauge\ng NaN\ng +Inf\ng -Inf\ng -0\n");
  // TextSerializer writes Nan; the same after parsing.
  expect_same_parse(writer_text({g}), serializer_text({g}));
}

TEST(TextWriter, HelpTextIsEscaped) {
  // TextSerializer writes help raw: its text for this help is not a valid exposition.
  auto f = family("c_total", "line one\nline two with a \\ backslash and \"quotes\"", MetricType::Counter);
  auto m = series({});
  m.counter.value = 1;
  f.metric.push_back(m);
  const std::string text = writer_text({f});
  EXPECT_EQ(text,
            "# HELP c_total line one\\nline two with a \\\\ backslash and \"quotes\"\n# TYPE c_total counter\n"
            "c_total 1\n");
  auto parsed = sp::prom::parse_prometheus_text(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  EXPECT_EQ(parsed.families[0].help, f.help);
  EXPECT_FALSE(sp::prom::parse_prometheus_text(serializer_text({f})).ok());
}

TEST(TextWriter, RealScrapeReexposedParsesTheSameAsTextSerializer) {
  // The pass-through of the test workload's real scrape, for two workers: Python's float sums included.
  auto parsed = sp::prom::parse_prometheus_text(sp::test::read_test_data("prom/workload.txt"));
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  std::map<std::string, sp::ScrapeResult> latest;
  for (const char* worker : {"master", "synchrotron1"}) {
    auto& r = latest[worker];
    r.up = true;
    r.worker_app = "synapse.app.generic_worker";
    r.families = std::make_shared<const std::vector<sp::prom::Family>>(parsed.families);
  }
  const auto families = sp::exporter::passthrough_metrics(latest, {});
  expect_same_parse(writer_text(families), serializer_text(families));
}
