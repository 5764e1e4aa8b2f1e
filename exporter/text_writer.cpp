#include "exporter/text_writer.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

namespace sp::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Appends `s` with each character of `special` preceded by a backslash and '\n' written as \n. Most strings need no
// escape: one scan, one append.
void append_escaped(std::string& out, std::string_view s, std::string_view special) {
  for (std::size_t pos = 0;;) {
    const std::size_t next = s.find_first_of(special, pos);
    out.append(s.substr(pos, next - pos));
    if (next == std::string_view::npos) return;
    out += '\\';
    out += s[next] == '\n' ? 'n' : s[next];
    pos = next + 1;
  }
}

constexpr std::string_view kLabelSpecial = "\\\"\n";
constexpr std::string_view kHelpSpecial = "\\\n";

// Room for any int64/uint64 and for any double in its shortest form (at most 24 characters).
using NumberBuffer = char[32];

template <typename T>
std::string_view format_integer(NumberBuffer& buf, T value) {
  return {buf, std::to_chars(buf, buf + sizeof buf, value).ptr};
}

std::string_view format_double(NumberBuffer& buf, double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value < 0 ? "-Inf" : "+Inf";
  if (value == std::trunc(value) && std::fabs(value) < 1e16 && !(value == 0 && std::signbit(value))) {
    // Counters, counts, whole bucket bounds: exact as an integer, and what TextSerializer writes for them.
    return format_integer(buf, static_cast<std::int64_t>(value));
  }
  // Shortest round trip; `general` picks fixed or exponent notation by printf's %g rule, like TextSerializer.
  return {buf, std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general).ptr};
}

// Writes the lines of one series: the family name, its label block (built once) and the values.
class SeriesWriter {
 public:
  SeriesWriter(std::string& out, const MetricFamily& family, const ClientMetric& metric, std::string& labels)
      : out_(out), family_(family), metric_(metric), labels_(labels) {
    labels_.clear();
    for (const auto& l : metric.label) {
      if (!labels_.empty()) labels_ += ',';
      labels_ += l.name;
      labels_ += "=\"";
      append_escaped(labels_, l.value, kLabelSpecial);
      labels_ += '"';
    }
  }

  // `name{labels} `, or `name{labels,extra="extra_value"} ` when extra is set.
  void head(std::string_view suffix, std::string_view extra = {}, std::string_view extra_value = {}) {
    out_ += family_.name;
    out_ += suffix;
    if (!labels_.empty() || !extra.empty()) {
      out_ += '{';
      out_ += labels_;
      if (!extra.empty()) {
        if (!labels_.empty()) out_ += ',';
        out_ += extra;
        out_ += "=\"";
        out_ += extra_value;
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
  }
  // A head whose extra label is a number (le, quantile).
  void head(std::string_view suffix, std::string_view extra, double extra_value) {
    NumberBuffer buf;
    head(suffix, extra, format_double(buf, extra_value));
  }

  void value(double v) {
    NumberBuffer buf;
    tail(format_double(buf, v));
  }
  void value(std::uint64_t v) {
    NumberBuffer buf;
    tail(format_integer(buf, v));
  }

 private:
  void tail(std::string_view value) {
    out_ += value;
    if (metric_.timestamp_ms != 0) {
      NumberBuffer buf;
      out_ += ' ';
      out_ += format_integer(buf, metric_.timestamp_ms);
    }
    out_ += '\n';
  }

  std::string& out_;
  const MetricFamily& family_;
  const ClientMetric& metric_;
  std::string& labels_;
};

void append_histogram(SeriesWriter& w, const ClientMetric::Histogram& h) {
  w.head("_count");
  w.value(h.sample_count);
  w.head("_sum");
  w.value(h.sample_sum);
  double last = -std::numeric_limits<double>::infinity();
  for (const auto& b : h.bucket) {
    w.head("_bucket", "le", b.upper_bound);
    w.value(b.cumulative_count);
    last = b.upper_bound;
  }
  if (last != std::numeric_limits<double>::infinity()) {
    w.head("_bucket", "le", "+Inf");
    w.value(h.sample_count);
  }
}

void append_summary(SeriesWriter& w, const ClientMetric::Summary& s) {
  w.head("_count");
  w.value(s.sample_count);
  w.head("_sum");
  w.value(s.sample_sum);
  for (const auto& q : s.quantile) {
    w.head("", "quantile", q.quantile);
    w.value(q.value);
  }
}

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Summary:
      return "summary";
    case MetricType::Histogram:
      return "histogram";
    case MetricType::Untyped:
      break;
  }
  return "untyped";
}

}  // namespace

void append_text(std::string& out, const std::vector<MetricFamily>& families) {
  std::string labels;  // one label block buffer for every series
  for (const auto& f : families) {
    if (!f.help.empty()) {
      out += "# HELP ";
      out += f.name;
      out += ' ';
      append_escaped(out, f.help, kHelpSpecial);
      out += '\n';
    }
    out += "# TYPE ";
    out += f.name;
    out += ' ';
    out += type_name(f.type);
    out += '\n';
    for (const auto& m : f.metric) {
      SeriesWriter w(out, f, m, labels);
      switch (f.type) {
        case MetricType::Counter:
          w.head("");
          w.value(m.counter.value);
          break;
        case MetricType::Gauge:
          w.head("");
          w.value(m.gauge.value);
          break;
        case MetricType::Untyped:
          w.head("");
          w.value(m.untyped.value);
          break;
        case MetricType::Histogram:
          append_histogram(w, m.histogram);
          break;
        case MetricType::Summary:
          append_summary(w, m.summary);
          break;
      }
    }
  }
}

}  // namespace sp::exporter
