// Which worker each PostgreSQL backend serves, as the postgres family decided it: what the block I/O family needs to
// charge a backend's disk requests to the worker it works for. An interface so that block I/O's logic is tested
// with a scripted set of decisions.
#pragma once

#include <map>
#include <set>

#include "core/model/process_book.h"  // WorkerLabels

namespace sp::agent {

class BackendDecisions {
 public:
  virtual ~BackendDecisions() = default;
  // Decided backends (PID as in proc_root -> the worker served, or kOtherWorker).
  virtual std::map<int, WorkerLabels> backend_decisions() const = 0;
  // Backends of the last scan not decided yet: their requests stay in the kernel until they are.
  virtual std::set<int> undecided_backends() const = 0;
};

}  // namespace sp::agent
