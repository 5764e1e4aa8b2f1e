// Parser for the Prometheus text exposition format, version 0.0.4, as served by Python's prometheus_client (what a
// Synapse worker's metrics listener returns). The scraper feeds it each worker's body; the exporter re-exposes the
// families with `worker`/`worker_app` added and the correlator reads a few of them (python_gc_time,
// synapse_storage_*). The input comes from another process, so it is treated as hostile: any bytes are accepted,
// nothing is assumed about UTF-8 or sizes, and every allocation is bounded by ParseLimits.
//
// Grammar (https://prometheus.io/docs/instrumenting/exposition_formats/, "Text format details"):
//   - lines end in '\n'; the last line must end in '\n' too (a body without it is reported as truncated, which is
//     what a cut transfer looks like); empty and blank lines are ignored; blanks and tabs separate tokens; leading
//     and trailing blanks/tabs are ignored.
//   - `# HELP name text`: text unescapes `\\` and `\n` (any other escape is an error); one HELP per name.
//     `# TYPE name type`: exactly two tokens; one TYPE per name, and before that family's first sample.
//     `# HELP` / `# TYPE` with nothing after them, and every other comment, are ignored (as Prometheus does).
//   - types counter, gauge, histogram, summary, untyped. prometheus_client maps OpenMetrics types to these for
//     text/plain (info/stateset -> gauge, gaugehistogram -> histogram, unknown -> untyped); should another producer
//     send `unknown` or any other well-formed word, the family is kept as "untyped" rather than failing the scrape.
//   - samples: `name[{label="value",...[,]}] value [timestamp]`. Metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
//     [a-zA-Z_][a-zA-Z0-9_]*, blanks allowed between tokens inside the braces, label values unescape `\\`, `\"`,
//     `\n` (any other escape is an error) and must be valid UTF-8, as must HELP text. A label name may appear once per
//     sample. Quoted (UTF-8) metric or label names of newer Prometheus versions are rejected.
//   - values: Go ParseFloat syntax as clients write it: [+-] decimal digits with optional fraction and exponent, or
//     Inf/Infinity with optional sign, or NaN (case-insensitive). Hex floats and digit underscores (which Go also
//     takes) are rejected: no client library writes them. Overflow (1e999) is an error, underflow gives 0.
//   - timestamps: optional int64 milliseconds (optional sign), anything else is an error.
//
// Families. A sample joins the family of its own name if there is one; else, if its name ends in _bucket, _sum or
// _count and the stem is a TYPE'd histogram (_bucket/_sum/_count) or summary (_sum/_count), that family; else a new
// "untyped" family of its name. So prometheus_client's `x_created` gauges (emitted after the histogram with their own
// HELP/TYPE) stay their own gauge family, and `synapse_storage_transaction_time_count_total` stays a counter.
// Inside a histogram every sample must be x_bucket (with a float `le`), x_sum or x_count; inside a summary x (with a
// float `quantile`), x_sum or x_count. Families keep the order of first appearance, samples the input order; a family
// may be split across the text (Prometheus merges such families by name too). A HELP/TYPE'd family with no samples
// (a labelled metric nothing has observed yet) is kept, with no samples.
// Not checked: duplicate series, bucket order, the +Inf bucket: they are the producer's semantics, not syntax.
//
// Errors: the first malformed line fails the whole parse, like a Prometheus scrape does ("line 42: unterminated
// label value"): a partial result would silently drop or misattribute series. Exceeding a limit is an error too.
// Never throws (std::bad_alloc aside), linear in the input, no reads outside `text`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sp::prom {

struct Sample {
  std::string name;  // full sample name: python_gc_time_bucket, not python_gc_time
  std::vector<std::pair<std::string, std::string>> labels;  // input order, unescaped
  double value = 0;
  std::optional<std::int64_t> timestamp_ms;
};

struct Family {
  std::string name;  // the TYPE/HELP name (histogram stem, counter with its _total)
  std::string help;  // unescaped; empty when there was no HELP line
  std::string type;  // counter, gauge, histogram, summary or untyped
  std::vector<Sample> samples;
};

// Every limit is inclusive ("at most"). Defaults leave room for a large homeserver (Synapse's main process exposes
// a few thousand series per thousand rooms' worth of labels) while keeping a hostile body from costing more than a
// small multiple of its own size.
struct ParseLimits {
  std::size_t max_families = 10'000;
  std::size_t max_samples = 500'000;             // over all families
  std::size_t max_labels_per_sample = 64;
  std::size_t max_total_labels = 2'000'000;      // label pairs over all samples
  std::size_t max_name_length = 256;             // metric and label names
  std::size_t max_label_value_length = 4096;     // after unescaping
  std::size_t max_help_length = 16 * 1024;       // after unescaping
};

struct ParseResult {
  std::vector<Family> families;  // empty on error
  std::string error;                 // "line N: ..." on error, empty on success
  std::size_t error_line = 0;        // 1-based line of the error, 0 on success
  bool ok() const { return error.empty(); }
};

ParseResult parse_prometheus_text(std::string_view text, const ParseLimits& limits = {});

// The value grammar above, exposed for the tests and for `le`/`quantile` label values.
std::optional<double> parse_float(std::string_view token);

}  // namespace sp::prom
