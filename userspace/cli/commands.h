// The subcommands. Each returns the process exit status.
#pragma once

#include "cli/options.h"
#include "core/proc/discovery.h"

namespace sp::cli {

int run_agent(const CliOptions& options);
int run_workers(const CliOptions& options);
int run_doctor(const CliOptions& options);
int run_record(const CliOptions& options);

// The discovery options every command derives from its CLI options.
DiscoveryOptions discovery_options(const CliOptions& options);


}  // namespace sp::cli
