// Wording and number formats shared by a recording's outputs (the trace, the summary and the HTML report), so that a
// worker or a query reads the same in all three. Internal to core/record: not part of the recording's interface.
#pragma once

#include <cstdint>
#include <string>

#include "core/model/db_stats.h"
#include "core/model/process_book.h"

namespace sp::record_format {

// "synchrotron1 (synapse.app.generic_worker)", or the bare worker name when the app is unknown.
std::string worker_title(const WorkerLabels& w);
// "SELECT users": the verb and table, without the statement's text.
std::string query_name(const QueryEvent& q);
// Seconds from `from` to `to` (ns); 0 when `to` is not later, so that a clipped or reordered pair never goes negative.
double seconds(std::uint64_t from, std::uint64_t to);
// "12.5 %" of a share in [0, 1].
std::string pct(double share);
// "3.25 ms" of a duration in seconds.
std::string ms(double seconds);

}  // namespace sp::record_format
