// The Prometheus text exposition format 0.0.4 written from prometheus-cpp MetricFamily values: what /metrics serves.
//
// Why not prometheus-cpp's TextSerializer: it writes through std::ostream token by token and formats every double
// with printf. A /metrics scrape with 64 workers (~10 MB, ~70k samples) spent most of its time there (issue 9:
// ostream insert/sentry ~40 % of the agent's samples, printf ~8 %). This writer appends to a std::string, builds each
// series' label block once for all its lines (a histogram has ~20 bucket lines) and formats numbers with to_chars.
//
// The output is TextSerializer's line for line: the same HELP/TYPE lines, series order, label escaping (\\, \", \n),
// histogram _count, _sum and _bucket lines (a +Inf bucket added when the last bound is finite), summary _count,
// _sum and quantile lines, counter/gauge/untyped values and timestamps (written when non-zero); integer values
// below 1e16 are written as integers. It differs where TextSerializer is wrong, and nowhere else:
//   - other doubles are the shortest text that parses back to the same value; TextSerializer rounds to 16 digits, so
//     0.30000000000000004 came out as 0.3 and the largest double as 1.797693134862316e+308, which overflows.
//     Where TextSerializer's text does parse back exactly, both texts parse to the same double.
//   - NaN is spelled NaN, as Prometheus does (TextSerializer: Nan; parsers ignore the case).
//   - HELP text is escaped (\\ and \n) as the format requires; TextSerializer writes it raw, so a newline in a help
//     string (a scraped worker's, re-exposed) broke the exposition.
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace sp::exporter {

// Appends `families` to `out` (which keeps its capacity: a caller may reuse one buffer across scrapes).
void append_text(std::string& out, const std::vector<prometheus::MetricFamily>& families);

}  // namespace sp::exporter
