#include "exporter/server.h"

#include <civetweb.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>
#include <string_view>

#include "core/util/log.h"
#include "exporter/metric_builders.h"
#include "exporter/text_writer.h"

namespace sp::exporter {
namespace {

bool valid_port(std::string_view s) {
  int port = -1;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  return ec == std::errc() && ptr == s.data() + s.size() && port >= 0 && port <= 65535;
}

}  // namespace

namespace {

struct HostPort {
  std::string host;  // "" when only a port is given
  std::string port;  // checked: 0-65535
};

HostPort split_listen(const std::string& listen) {
  HostPort hp;
  if (listen.starts_with('[')) {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      throw ListenError("--listen " + listen + ": expected [IPv6]:PORT");
    }
    hp.host = listen.substr(0, close + 1);
    hp.port = listen.substr(close + 2);
  } else if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    hp.host = listen.substr(0, colon);
    hp.port = listen.substr(colon + 1);
  } else {
    hp.port = listen;
  }
  if (!valid_port(hp.port)) {
    throw ListenError("--listen " + listen + ": '" + hp.port + "' is not a port number (0-65535)");
  }
  return hp;
}

}  // namespace

std::string listen_spec(const std::string& listen) {
  HostPort hp = split_listen(listen);
  return hp.host.empty() ? hp.port : hp.host + ":" + hp.port;
}

int listen_port(const std::string& listen) { return std::stoi(split_listen(listen).port); }

namespace {

constexpr int kThreads = 2;
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
// zlib's levels 1-3 share its fast matcher and run at the same speed on a 64-worker exposition (8.45 MB: 14.5 ms,
// ~580 MB/s); 3 compresses best of them (233 kB; level 1: 278 kB). Level 4 and up switch to lazy matching: 26 ms at
// level 4, 35 ms at 6 (zlib's default, what the Exposer used) for 206 kB.
constexpr int kGzipLevel = 3;

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Accept-Encoding (RFC 9110 12.5.3): a comma-separated list of codings, each with optional parameters; a weight of
// zero ("gzip;q=0") refuses the coding.
bool accepts_gzip(const char* header) {
  if (header == nullptr) return false;
  std::string_view rest(header);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    std::size_t semicolon = item.find(';');
    if (!equals_ignoring_case(trim(item.substr(0, semicolon)), "gzip")) continue;
    while (semicolon != std::string_view::npos) {
      item.remove_prefix(semicolon + 1);
      semicolon = item.find(';');
      std::string_view param = trim(item.substr(0, semicolon));
      if (param.size() > 2 && equals_ignoring_case(param.substr(0, 2), "q=")) {
        return param.find_first_not_of("0.", 2) != std::string_view::npos;  // q=0, q=0.0, q=0.000: refused
      }
    }
    return true;
  }
  return false;
}

// The gzip member holding `in`, or nothing if zlib fails (then the body goes uncompressed). The output grows by a
// sixteenth of the input at a time (text expositions compress 20-40 times): no buffer of deflateBound's size.
std::optional<std::string> gzip(std::string_view in) {
  z_stream zs{};
  if (deflateInit2(&zs, kGzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return std::nullopt;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  int rc = Z_OK;
  while (rc == Z_OK) {
    const std::size_t used = out.size();
    out.resize(used + std::max<std::size_t>(in.size() / 16, 64 * 1024));
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    zs.avail_out = static_cast<uInt>(out.size() - used);
    rc = deflate(&zs, Z_FINISH);
  }
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

// GET and HEAD only: anything else gets 405 and false.
bool method_allowed(mg_connection* conn) {
  const std::string_view method = mg_get_request_info(conn)->request_method;
  if (method == "GET" || method == "HEAD") return true;
  mg_response_header_start(conn, 405);
  mg_response_header_add(conn, "Allow", "GET, HEAD", -1);
  mg_response_header_add(conn, "Content-Length", "0", -1);
  mg_response_header_send(conn);
  return false;
}

int respond(mg_connection* conn, std::string_view body) {
  std::optional<std::string> compressed;
  if (accepts_gzip(mg_get_header(conn, "Accept-Encoding"))) compressed = gzip(body);
  if (compressed) body = *compressed;
  const std::string length = std::to_string(body.size());
  mg_response_header_start(conn, 200);
  mg_response_header_add(conn, "Content-Type", kContentType, -1);
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Vary", "Accept-Encoding", -1);
  if (compressed) mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
  mg_response_header_send(conn);
  if (std::strcmp(mg_get_request_info(conn)->request_method, "HEAD") != 0) mg_write(conn, body.data(), body.size());
  return 200;
}

}  // namespace

MetricsServer::MetricsServer(const std::string& listen) {
  const std::string spec = listen_spec(listen);
  // Once per process, before the first server (civetweb's library state; never torn down).
  static std::once_flag library_once;
  std::call_once(library_once, [] { mg_init_library(0); });
  // No document_root: civetweb serves no file and no directory, only the handlers registered here.
  const std::string threads = std::to_string(kThreads);
  const char* options[] = {"listening_ports", spec.c_str(), "num_threads", threads.c_str(), nullptr};
  mg_callbacks callbacks{};
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.configuration_options = options;
  char error_text[256] = "";
  unsigned error_code = 0;
  mg_error_data error{};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof error_text;
  ctx_.reset(mg_start2(&init, &error));
  if (!ctx_) {
    throw ListenError("cannot listen on " + listen + " (" + (error_text[0] ? error_text : "civetweb failed to start") +
                      "): is the port already in use? Choose another with --listen HOST:PORT");
  }
  mg_set_request_handler(
      ctx_.get(), "/metrics$",
      [](mg_connection* conn, void* self) { return static_cast<const MetricsServer*>(self)->serve_metrics(conn); },
      this);
}

MetricsServer::~MetricsServer() = default;

void MetricsServer::Stop::operator()(mg_context* ctx) const { mg_stop(ctx); }

void MetricsServer::add(std::shared_ptr<prometheus::Collectable> collectable) {
  const std::lock_guard lock(mutex_);
  collectables_.push_back(std::move(collectable));
}

void MetricsServer::serve_health() {
  health_body_ = to_text({gauge_metric("synapse_profiler_up", "The agent is running.", {gauge_point({}, 1)})});
  mg_set_request_handler(
      ctx_.get(), "/healthz$",
      [](mg_connection* conn, void* self) {
        if (!method_allowed(conn)) return 405;
        return respond(conn, static_cast<const MetricsServer*>(self)->health_body_);
      },
      this);
}

int MetricsServer::serve_metrics(mg_connection* conn) const {
  if (!method_allowed(conn)) return 405;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
  {
    const std::lock_guard lock(mutex_);
    collectables = collectables_;
  }
  // Sized like the last body: growing a 10 MB string by doubling cost as much as writing it (copies, page faults).
  std::string body;
  const std::size_t hint = body_size_hint_;
  body.reserve(hint + hint / 8);
  try {
    for (const auto& c : collectables) append_text(body, c->Collect());
  } catch (const std::exception& e) {
    // civetweb is C: nothing may unwind through it. A failed collection is a failed scrape, not a dead agent.
    log::error("/metrics: collecting the metrics failed: {}", e.what());
    mg_send_http_error(conn, 500, "%s", "collecting the metrics failed");
    return 500;
  }
  body_size_hint_ = body.size();
  return respond(conn, body);
}

int MetricsServer::port() const {
  mg_server_port ports[4];
  const int n = mg_get_server_ports(ctx_.get(), 4, ports);
  return n > 0 ? ports[0].port : -1;
}

}  // namespace sp::exporter
