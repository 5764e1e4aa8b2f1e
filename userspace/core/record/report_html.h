// A recording's summary as report.html (`synapse-profiler record`): the findings, then per worker and per disk the
// tables and distribution charts, as one page that a browser shows without fetching anything.
#pragma once

#include <string>

#include "core/record/summary.h"

namespace sp {

// One self-contained HTML file: inline CSS and SVG, no script, no external resource.
std::string render_report_html(const RecordingSummary& s);

}  // namespace sp
