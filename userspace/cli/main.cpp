#include <fmt/core.h>
#include <malloc.h>

#include <cstdlib>
#include <exception>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/util/log.h"

namespace {

// glibc's defaults suit a short-lived program, not an agent that lives for months next to Synapse: every thread that
// allocates gets an arena of its own (the scrape, scan and HTTP threads), and a freed block of a few MB raises the
// mmap threshold, so that the next /metrics body comes from an arena and stays resident after it is freed. Two arenas
// and a fixed threshold keep RSS near what is in use (measured in docs/performance.md). The environment
// (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) still wins.
void tune_malloc() {
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

}  // namespace

int main(int argc, char** argv) {
  tune_malloc();
  auto parsed = sp::cli::parse_cli(argc, argv);
  if (!parsed.options) {
    fmt::print(parsed.exit_code == 0 ? stdout : stderr, "{}\n", parsed.message);
    return parsed.exit_code;
  }
  const auto& o = *parsed.options;
  sp::log::set_level(o.verbose ? sp::log::Level::Debug : o.quiet ? sp::log::Level::Warn : sp::log::Level::Info);
  try {
    switch (o.command) {
      case sp::cli::Command::Run: return sp::cli::run_agent(o);
      case sp::cli::Command::Workers: return sp::cli::run_workers(o);
      case sp::cli::Command::Doctor: return sp::cli::run_doctor(o);
      case sp::cli::Command::Record: return sp::cli::run_record(o);
    }
  } catch (const std::exception& e) {
    sp::log::error("{}", e.what());
    return 1;
  }
  return 1;
}
