// libFuzzer target for the Prometheus text parser (core/scrape/prom_text.h). On every input:
//   1. parse with the default limits and with tiny ones: either success within the limits, or an error "line N: ..."
//      with N > 0 and no families;
//   2. on success, write the families back out as text (HELP/TYPE, escaped labels, shortest round-trip values) and
//      parse that again: the result must be the same model. This catches unescaping that loses or invents bytes,
//      samples put in the wrong family, and values that do not survive.
// Built as a real fuzzer with -DSP_FUZZ=ON (clang), otherwise as sp_fuzz_prom_regress over tests/data/fuzz/prom.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/scrape/prom_text.h"

namespace {

using sp::prom::Family;
using sp::prom::ParseLimits;
using sp::prom::ParseResult;

[[noreturn]] void fail(const char* what, const std::string& detail, std::string_view input) {
  std::fprintf(stderr, "%s: %s\ninput (%zu bytes): %.*s\n", what, detail.c_str(), input.size(),
               static_cast<int>(std::min<std::size_t>(input.size(), 2000)), input.data());
  std::abort();
}

std::string escape(std::string_view s, bool quote_too) {
  std::string out;
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote_too) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);  // shortest representation that reads back to the same double
}

std::string serialize(const std::vector<Family>& families) {
  std::string out;
  for (const auto& f : families) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, escape(f.help, false), f.name, f.type);
    for (const auto& s : f.samples) {
      out += s.name;
      if (!s.labels.empty()) {
        out += '{';
        for (const auto& [k, v] : s.labels) out += fmt::format("{}=\"{}\",", k, escape(v, true));
        out += '}';
      }
      out += ' ';
      out += format_value(s.value);
      if (s.timestamp_ms) out += fmt::format(" {}", *s.timestamp_ms);
      out += '\n';
    }
  }
  return out;
}

bool same_value(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
}

std::string difference(const std::vector<Family>& a, const std::vector<Family>& b) {
  if (a.size() != b.size()) return fmt::format("{} families vs {}", a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const Family& x = a[i];
    const Family& y = b[i];
    if (x.name != y.name || x.help != y.help || x.type != y.type || x.samples.size() != y.samples.size()) {
      return fmt::format("family {}: {} {} {} samples vs {} {} {} {} samples", i, x.name, x.type, x.samples.size(),
                         y.name, y.type, y.samples.size(), x.help == y.help ? "same help" : "other help");
    }
    for (std::size_t k = 0; k < x.samples.size(); ++k) {
      const auto& s = x.samples[k];
      const auto& t = y.samples[k];
      if (s.name != t.name || s.labels != t.labels || !same_value(s.value, t.value) || s.timestamp_ms != t.timestamp_ms) {
        return fmt::format("family {} sample {}: {} vs {}", x.name, k, s.name, t.name);
      }
    }
  }
  return {};
}

void check_shape(const ParseResult& r, const ParseLimits& limits, std::string_view input) {
  if (!r.ok()) {
    if (r.error.rfind("line ", 0) != 0 || r.error_line == 0) fail("error without a line", r.error, input);
    if (!r.families.empty()) fail("families returned with an error", r.error, input);
    return;
  }
  if (r.families.size() > limits.max_families) fail("too many families", std::to_string(r.families.size()), input);
  std::size_t samples = 0;
  std::size_t labels = 0;
  for (const auto& f : r.families) {
    if (f.type != "counter" && f.type != "gauge" && f.type != "histogram" && f.type != "summary" && f.type != "untyped") {
      fail("unknown type", f.type, input);
    }
    if (f.name.empty() || f.name.size() > limits.max_name_length) fail("bad family name", f.name, input);
    if (f.help.size() > limits.max_help_length) fail("help too long", f.name, input);
    samples += f.samples.size();
    for (const auto& s : f.samples) {
      if (s.name.rfind(f.name, 0) != 0) fail("sample outside its family's name", s.name + " in " + f.name, input);
      if (s.labels.size() > limits.max_labels_per_sample) fail("too many labels", s.name, input);
      labels += s.labels.size();
      for (const auto& [k, v] : s.labels) {
        if (k.size() > limits.max_name_length || v.size() > limits.max_label_value_length) {
          fail("label too long", k, input);
        }
      }
    }
  }
  if (samples > limits.max_samples) fail("too many samples", std::to_string(samples), input);
  if (labels > limits.max_total_labels) fail("too many labels in total", std::to_string(labels), input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  ParseLimits tiny;
  tiny.max_families = 3;
  tiny.max_samples = 8;
  tiny.max_labels_per_sample = 3;
  tiny.max_total_labels = 10;
  tiny.max_name_length = 12;
  tiny.max_label_value_length = 8;
  tiny.max_help_length = 8;
  check_shape(sp::prom::parse_prometheus_text(input, tiny), tiny, input);

  const ParseLimits limits;
  const ParseResult first = sp::prom::parse_prometheus_text(input, limits);
  check_shape(first, limits, input);
  if (!first.ok()) return 0;
  const std::string text = serialize(first.families);
  const ParseResult second = sp::prom::parse_prometheus_text(text, limits);
  if (!second.ok()) fail("re-serialized text does not parse", second.error + "\n" + text, input);
  const std::string diff = difference(first.families, second.families);
  if (!diff.empty()) fail("round trip changed the model", diff + "\n" + text, input);
  return 0;
}
