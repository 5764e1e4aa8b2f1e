// One probe's state for one worker, as every family reports it (ProbeFamily::attach_status): attached or not, by
// which method, and why not. Exported as synapse_profiler_probe_attached and logged at start-up.
#pragma once

#include <string>

#include "core/model/process_book.h"  // WorkerLabels

namespace sp {

struct ProbeStatus {
  WorkerLabels labels;
  int host_pid = 0;
  std::string probe;   // "gc", "libpq", ...
  std::string method;  // "usdt", "symbol", "methoddef", ...
  bool attached = false;
  std::string error;
};

}  // namespace sp
