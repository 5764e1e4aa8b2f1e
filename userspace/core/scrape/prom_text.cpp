#include "core/scrape/prom_text.h"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <unordered_map>

namespace sp::prom {
namespace {

constexpr bool is_blank(char c) { return c == ' ' || c == '\t'; }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_label_name_start(char c) { return is_alpha(c) || c == '_'; }
constexpr bool is_label_name_char(char c) { return is_label_name_start(c) || is_digit(c); }
constexpr bool is_metric_name_start(char c) { return is_label_name_start(c) || c == ':'; }
constexpr bool is_metric_name_char(char c) { return is_metric_name_start(c) || is_digit(c); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == y; });
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Input text shown in an error: short, printable ASCII only, so a hostile body cannot inject control characters or
// megabytes into a log line.
std::string quote(std::string_view s) {
  constexpr std::size_t kMax = 48;
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  out += s.size() > kMax ? "\"..." : "\"";
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

// For a decimal literal from_chars called out of range: true if the value is too small (underflow, Go gives 0), false
// if too large. Decides by the decimal exponent of the first significant digit.
bool is_underflow(std::string_view digits) {
  std::int64_t int_digits = 0;  // significant digits before the point
  std::int64_t leading_frac_zeros = 0;
  bool seen_nonzero = false;
  bool in_frac = false;
  std::size_t i = 0;
  for (; i < digits.size() && digits[i] != 'e' && digits[i] != 'E'; ++i) {
    const char c = digits[i];
    if (c == '.') {
      in_frac = true;
      continue;
    }
    if (!seen_nonzero && c == '0') {
      if (in_frac) ++leading_frac_zeros;
      continue;
    }
    seen_nonzero = true;
    if (!in_frac) ++int_digits;
  }
  std::int64_t exponent = 0;
  if (i < digits.size()) {
    ++i;
    bool neg = false;
    if (i < digits.size() && (digits[i] == '+' || digits[i] == '-')) neg = digits[i++] == '-';
    for (; i < digits.size(); ++i) exponent = std::min<std::int64_t>(exponent * 10 + (digits[i] - '0'), 1'000'000'000);
    if (neg) exponent = -exponent;
  }
  const std::int64_t magnitude = int_digits > 0 ? int_digits - 1 : -leading_frac_zeros - 1;
  return magnitude + exponent < 0;
}

struct FamilyState {
  bool help_seen = false;
  bool type_seen = false;
};

class Parser {
 public:
  Parser(std::string_view text, const ParseLimits& limits) : text_(text), limits_(limits) {}

  ParseResult run() {
    ParseResult result;
    std::size_t pos = 0;
    while (pos < text_.size()) {
      ++line_no_;
      const std::size_t nl = text_.find('\n', pos);
      std::string_view line = text_.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      pos = nl == std::string_view::npos ? text_.size() : nl + 1;
      while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
      while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
      if (nl == std::string_view::npos && !line.empty()) {
        fail("last line does not end in a line feed (truncated body?)");
        break;
      }
      if (line.empty()) continue;
      const bool ok = line.front() == '#' ? comment(line.substr(1)) : sample(line);
      if (!ok) break;
    }
    if (!error_.empty()) {
      result.error = std::move(error_);
      result.error_line = line_no_;
      return result;
    }
    result.families = std::move(families_);
    return result;
  }

 private:
  bool fail(std::string_view message) {
    error_ = fmt::format("line {}: {}", line_no_, message);
    return false;
  }

  static std::string_view take_token(std::string_view& s) {
    std::size_t n = 0;
    while (n < s.size() && !is_blank(s[n])) ++n;
    const std::string_view token = s.substr(0, n);
    s.remove_prefix(n);
    return token;
  }
  static void skip_blanks(std::string_view& s) {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  }

  bool check_metric_name(std::string_view name, std::string_view where) {
    if (name.empty() || !is_metric_name_start(name.front()) ||
        !std::all_of(name.begin(), name.end(), is_metric_name_char)) {
      return fail(fmt::format("invalid metric name {} in {}", quote(name), where));
    }
    if (name.size() > limits_.max_name_length) {
      return fail(fmt::format("metric name longer than {} bytes in {}", limits_.max_name_length, where));
    }
    return true;
  }

  // Returns the family index, creating an untyped family; SIZE_MAX (with the error set) past the limit.
  std::size_t family_index(std::string_view name) {
    name_buf_.assign(name);
    const auto it = index_.find(name_buf_);
    if (it != index_.end()) return it->second;
    if (families_.size() >= limits_.max_families) {
      fail(fmt::format("more than {} metric families", limits_.max_families));
      return std::numeric_limits<std::size_t>::max();
    }
    Family family;
    family.name = name_buf_;
    family.type = "untyped";
    families_.push_back(std::move(family));
    states_.emplace_back();
    index_.emplace(name_buf_, families_.size() - 1);
    return families_.size() - 1;
  }

  bool comment(std::string_view rest) {
    skip_blanks(rest);
    const std::string_view keyword = take_token(rest);
    if (keyword != "HELP" && keyword != "TYPE") return true;  // an ordinary comment
    skip_blanks(rest);
    if (rest.empty()) return true;  // "# HELP" alone: a comment, as for Prometheus
    const std::string_view name = take_token(rest);
    if (!check_metric_name(name, fmt::format("{} line", keyword))) return false;
    skip_blanks(rest);
    return keyword == "HELP" ? help(name, rest) : type(name, rest);
  }

  bool help(std::string_view name, std::string_view text) {
    std::string unescaped;
    unescaped.reserve(std::min(text.size(), limits_.max_help_length));
    for (std::size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (c == '\\') {
        if (i + 1 == text.size()) return fail(fmt::format("HELP for {}: backslash at end of line", name));
        const char e = text[++i];
        if (e == 'n') {
          c = '\n';
        } else if (e == '\\') {
          c = '\\';
        } else {
          return fail(fmt::format("HELP for {}: invalid escape sequence {}", name, quote(text.substr(i - 1, 2))));
        }
      }
      if (unescaped.size() >= limits_.max_help_length) {
        return fail(fmt::format("HELP for {} longer than {} bytes", name, limits_.max_help_length));
      }
      unescaped += c;
    }
    if (!valid_utf8(unescaped)) return fail(fmt::format("HELP for {}: invalid UTF-8", name));
    const std::size_t f = family_index(name);
    if (f == std::numeric_limits<std::size_t>::max()) return false;
    if (states_[f].help_seen) return fail(fmt::format("second HELP line for {}", name));
    states_[f].help_seen = true;
    families_[f].help = std::move(unescaped);
    return true;
  }

  bool type(std::string_view name, std::string_view rest) {
    const std::string_view type_token = take_token(rest);
    skip_blanks(rest);
    if (type_token.empty()) return fail(fmt::format("TYPE line for {} without a type", name));
    if (!rest.empty()) return fail(fmt::format("TYPE line for {}: unexpected text after the type", name));
    std::string type_name;
    for (const char* known : {"counter", "gauge", "histogram", "summary", "untyped"}) {
      if (iequals(type_token, known)) type_name = known;
    }
    if (type_name.empty()) {
      // `unknown` (OpenMetrics) or another producer's word: keep the samples, as untyped.
      if (!std::all_of(type_token.begin(), type_token.end(), is_label_name_char)) {
        return fail(fmt::format("TYPE line for {}: invalid type {}", name, quote(type_token)));
      }
      type_name = "untyped";
    }
    const std::size_t f = family_index(name);
    if (f == std::numeric_limits<std::size_t>::max()) return false;
    if (states_[f].type_seen) return fail(fmt::format("second TYPE line for {}", name));
    if (!families_[f].samples.empty()) return fail(fmt::format("TYPE line for {} after its samples", name));
    states_[f].type_seen = true;
    families_[f].type = std::move(type_name);
    return true;
  }

  // Reads `"...."` at the start of s (the opening quote already checked), unescaping into out.
  bool label_value(std::string_view& s, std::string_view label, std::string& out) {
    s.remove_prefix(1);  // the opening quote
    for (std::size_t i = 0; i < s.size(); ++i) {
      char c = s[i];
      if (c == '"') {
        s.remove_prefix(i + 1);
        if (!valid_utf8(out)) return fail(fmt::format("label {}: invalid UTF-8 in value", label));
        return true;
      }
      if (c == '\\') {
        if (i + 1 == s.size()) break;  // unterminated
        const char e = s[++i];
        if (e == 'n') {
          c = '\n';
        } else if (e == '\\' || e == '"') {
          c = e;
        } else {
          return fail(fmt::format("label {}: invalid escape sequence {} in value", label, quote(s.substr(i - 1, 2))));
        }
      }
      if (out.size() >= limits_.max_label_value_length) {
        return fail(fmt::format("label {}: value longer than {} bytes", label, limits_.max_label_value_length));
      }
      out += c;
    }
    return fail(fmt::format("label {}: unterminated label value", label));
  }

  bool labels(std::string_view& s, std::string_view metric, Sample& out) {
    s.remove_prefix(1);  // '{'
    while (true) {
      skip_blanks(s);
      if (s.empty()) return fail(fmt::format("sample {}: unterminated label set", metric));
      if (s.front() == '}') {
        s.remove_prefix(1);
        return true;
      }
      std::size_t n = 0;
      while (n < s.size() && is_label_name_char(s[n])) ++n;
      const std::string_view name = s.substr(0, n);
      if (name.empty() || !is_label_name_start(name.front())) {
        if (s.front() == '"') return fail(fmt::format("sample {}: quoted label names are not supported", metric));
        return fail(fmt::format("sample {}: expected a label name or '}}' at {}", metric, quote(s)));
      }
      if (name.size() > limits_.max_name_length) {
        return fail(fmt::format("sample {}: label name longer than {} bytes", metric, limits_.max_name_length));
      }
      s.remove_prefix(n);
      skip_blanks(s);
      if (s.empty() || s.front() != '=') {
        return fail(fmt::format("sample {}: expected '=' after label name {}", metric, name));
      }
      s.remove_prefix(1);
      skip_blanks(s);
      if (s.empty() || s.front() != '"') {
        return fail(fmt::format("sample {}: expected '\"' to start the value of label {}", metric, name));
      }
      for (const auto& [existing, value] : out.labels) {
        if (existing == name) return fail(fmt::format("sample {}: duplicate label {}", metric, name));
      }
      if (out.labels.size() >= limits_.max_labels_per_sample) {
        return fail(fmt::format("sample {}: more than {} labels", metric, limits_.max_labels_per_sample));
      }
      if (total_labels_ >= limits_.max_total_labels) {
        return fail(fmt::format("more than {} labels in total", limits_.max_total_labels));
      }
      std::string value;
      if (!label_value(s, name, value)) return false;
      out.labels.emplace_back(std::string(name), std::move(value));
      ++total_labels_;
      skip_blanks(s);
      if (s.empty()) return fail(fmt::format("sample {}: unterminated label set", metric));
      if (s.front() == ',') {
        s.remove_prefix(1);
      } else if (s.front() != '}') {
        return fail(fmt::format("sample {}: expected ',' or '}}' after the value of label {}", metric, name));
      }
    }
  }

  static const std::string* find_label(const Sample& sample, std::string_view name) {
    for (const auto& [k, v] : sample.labels) {
      if (k == name) return &v;
    }
    return nullptr;
  }

  // Picks the family for a sample and checks the histogram/summary conventions.
  bool attach(Sample&& sample) {
    const std::string_view name = sample.name;
    std::size_t f = std::numeric_limits<std::size_t>::max();
    if (const auto it = index_.find(sample.name); it != index_.end()) {
      f = it->second;
    } else {
      for (const std::string_view suffix : {"_bucket", "_sum", "_count"}) {
        if (!ends_with(name, suffix)) continue;
        name_buf_.assign(name.substr(0, name.size() - suffix.size()));
        const auto stem = index_.find(name_buf_);
        if (stem == index_.end()) continue;
        const std::string& type = families_[stem->second].type;
        if (type == "histogram" || (type == "summary" && suffix != "_bucket")) f = stem->second;
      }
      if (f == std::numeric_limits<std::size_t>::max()) f = family_index(name);
      if (f == std::numeric_limits<std::size_t>::max()) return false;
    }
    Family& family = families_[f];
    const std::string_view stem = family.name;
    const bool is_sum_or_count = name.size() > stem.size() && (name.substr(stem.size()) == "_sum" || name.substr(stem.size()) == "_count");
    if (family.type == "histogram" && !is_sum_or_count) {
      if (name.size() <= stem.size() || name.substr(stem.size()) != "_bucket") {
        return fail(fmt::format("sample {} in histogram {}: expected {}_bucket, {}_sum or {}_count", name, stem, stem,
                                stem, stem));
      }
      const std::string* le = find_label(sample, "le");
      if (!le) return fail(fmt::format("histogram bucket {} without an le label", name));
      if (!parse_float(*le)) return fail(fmt::format("histogram bucket {}: invalid le {}", name, quote(*le)));
    } else if (family.type == "summary" && !is_sum_or_count) {
      const std::string* q = find_label(sample, "quantile");
      if (!q) return fail(fmt::format("summary sample {} without a quantile label", name));
      if (!parse_float(*q)) return fail(fmt::format("summary sample {}: invalid quantile {}", name, quote(*q)));
    }
    family.samples.push_back(std::move(sample));
    return true;
  }

  bool sample(std::string_view s) {
    if (total_samples_ >= limits_.max_samples) return fail(fmt::format("more than {} samples", limits_.max_samples));
    std::size_t n = 0;
    while (n < s.size() && is_metric_name_char(s[n])) ++n;
    const std::string_view name = s.substr(0, n);
    if (name.empty() || !is_metric_name_start(name.front())) {
      if (s.front() == '{') return fail("sample without a metric name (quoted metric names are not supported)");
      return fail(fmt::format("invalid metric name at {}", quote(s)));
    }
    if (name.size() > limits_.max_name_length) {
      return fail(fmt::format("metric name longer than {} bytes", limits_.max_name_length));
    }
    s.remove_prefix(n);
    if (!s.empty() && !is_blank(s.front()) && s.front() != '{') {
      return fail(fmt::format("invalid character {} in metric name {}", quote(s.substr(0, 1)), name));
    }
    Sample out;
    out.name.assign(name);
    skip_blanks(s);
    if (!s.empty() && s.front() == '{' && !labels(s, name, out)) return false;
    skip_blanks(s);
    const std::string_view value = take_token(s);
    if (value.empty()) return fail(fmt::format("sample {} without a value", name));
    const auto v = parse_float(value);
    if (!v) return fail(fmt::format("sample {}: invalid value {}", name, quote(value)));
    out.value = *v;
    skip_blanks(s);
    if (!s.empty()) {
      const std::string_view ts = take_token(s);
      const auto t = parse_timestamp(ts);
      if (!t) return fail(fmt::format("sample {}: invalid timestamp {}", name, quote(ts)));
      out.timestamp_ms = *t;
      skip_blanks(s);
      if (!s.empty()) return fail(fmt::format("sample {}: unexpected text {} after the timestamp", name, quote(s)));
    }
    ++total_samples_;
    return attach(std::move(out));
  }

  static std::optional<std::int64_t> parse_timestamp(std::string_view t) {
    if (!t.empty() && t.front() == '+') t.remove_prefix(1);
    const std::string_view digits = (!t.empty() && t.front() == '-') ? t.substr(1) : t;
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), is_digit)) return std::nullopt;
    std::int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
    if (ec != std::errc() || ptr != t.data() + t.size()) return std::nullopt;
    return value;
  }

  std::string_view text_;
  const ParseLimits& limits_;
  std::vector<Family> families_;
  std::vector<FamilyState> states_;  // parallel to families_
  std::unordered_map<std::string, std::size_t> index_;
  std::string name_buf_;  // lookup key, reused to avoid an allocation per sample
  std::size_t total_samples_ = 0;
  std::size_t total_labels_ = 0;
  std::size_t line_no_ = 0;
  std::string error_;
};

}  // namespace

std::optional<double> parse_float(std::string_view token) {
  if (token.empty()) return std::nullopt;
  bool negative = false;
  std::string_view rest = token;
  if (rest.front() == '+' || rest.front() == '-') {
    negative = rest.front() == '-';
    rest.remove_prefix(1);
  }
  if (iequals(rest, "inf") || iequals(rest, "infinity")) {
    return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  if (iequals(rest, "nan")) {
    if (rest.size() != token.size()) return std::nullopt;  // a signed NaN is not a Go float
    return std::numeric_limits<double>::quiet_NaN();
  }
  // digits [. digits] [e [+-] digits], at least one mantissa digit; from_chars would also take "inf", hex and such,
  // so the shape is checked here first.
  std::size_t i = 0;
  std::size_t mantissa_digits = 0;
  while (i < rest.size() && is_digit(rest[i])) ++i, ++mantissa_digits;
  if (i < rest.size() && rest[i] == '.') {
    ++i;
    while (i < rest.size() && is_digit(rest[i])) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return std::nullopt;
  if (i < rest.size() && (rest[i] == 'e' || rest[i] == 'E')) {
    ++i;
    if (i < rest.size() && (rest[i] == '+' || rest[i] == '-')) ++i;
    const std::size_t exp_start = i;
    while (i < rest.size() && is_digit(rest[i])) ++i;
    if (i == exp_start) return std::nullopt;
  }
  if (i != rest.size()) return std::nullopt;
  double value = 0;
  const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value, std::chars_format::general);
  if (ec == std::errc::result_out_of_range) {
    if (!is_underflow(rest)) return std::nullopt;
    value = 0;
  } else if (ec != std::errc() || ptr != rest.data() + rest.size()) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

ParseResult parse_prometheus_text(std::string_view text, const ParseLimits& limits) {
  return Parser(text, limits).run();
}

}  // namespace sp::prom
