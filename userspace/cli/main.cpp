#include <fmt/core.h>

#include <exception>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/log.h"

int main(int argc, char** argv) {
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
