#include "core/util/log.h"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace sp::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::mutex g_mutex;

const char* level_name(Level level) {
  switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warning";
    case Level::Error: return "error";
    case Level::Off: break;
  }
  return "";
}
}  // namespace

void set_level(Level level) { g_level.store(static_cast<int>(level)); }
Level level() { return static_cast<Level>(g_level.load()); }
bool enabled(Level lvl) { return static_cast<int>(lvl) >= g_level.load() && lvl != Level::Off; }

void write(Level lvl, std::string_view message) {
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm_utc{};
  gmtime_r(&ts.tv_sec, &tm_utc);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm_utc);
  std::lock_guard lock(g_mutex);
  fmt::print(stderr, "{}.{:03d}Z {}: {}\n", stamp, static_cast<int>(ts.tv_nsec / 1000000), level_name(lvl), message);
  std::fflush(stderr);
}

}  // namespace sp::log
