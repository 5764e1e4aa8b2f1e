#include "exporter/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

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

// "[HOST]:PORT" or "HOST:PORT" or ":PORT" or "PORT" -> host (without brackets; "" when none) and port.
struct HostPort {
  std::string host;
  std::string port;
  bool bracketed = false;
};

HostPort split_listen(const std::string& listen) {
  HostPort hp;
  if (listen.starts_with('[')) {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      throw ListenError("--listen " + listen + ": expected [IPv6]:PORT");
    }
    hp.host = listen.substr(1, close - 1);
    hp.port = listen.substr(close + 2);
    hp.bracketed = true;
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

ListenAddress parse_listen(const std::string& listen) {
  const HostPort hp = split_listen(listen);
  ListenAddress a;
  a.port = std::stoi(hp.port);
  if (hp.host.empty() && !hp.bracketed) return a;  // ":PORT", "PORT": every interface, both families
  if (hp.bracketed) {
    in6_addr v6{};
    if (inet_pton(AF_INET6, hp.host.c_str(), &v6) != 1) {
      throw ListenError("--listen " + listen + ": '" + hp.host + "' is not an IPv6 address");
    }
    // [::] is every interface of both families, as a Kubernetes pod on a dual-stack cluster needs; any other IPv6
    // address is that address only.
    a.family = IN6_IS_ADDR_UNSPECIFIED(&v6) ? ListenAddress::Family::kDualStack : ListenAddress::Family::kIPv6Only;
    a.host = hp.host;
    return a;
  }
  if (hp.host.find(':') != std::string::npos) {
    throw ListenError("--listen " + listen + ": an IPv6 address goes in brackets, e.g. [::1]:9477 or [::]:9477");
  }
  in_addr v4{};
  if (inet_pton(AF_INET, hp.host.c_str(), &v4) != 1) {
    throw ListenError("--listen " + listen + ": '" + hp.host +
                      "' is not an IP address (use a numeric address: 127.0.0.1, 0.0.0.0, [::1], [::])");
  }
  a.family = ListenAddress::Family::kIPv4;
  a.host = hp.host;
  return a;
}

int listen_port(const std::string& listen) { return parse_listen(listen).port; }

namespace {

// The limits (see server.h). Prometheus and a kubelet open a handful of connections; 32 leaves room for several
// scrapers and probes plus clients that hang, each of which is closed after kIdleTimeoutS without progress.
constexpr unsigned kMaxConnections = 32;
constexpr unsigned kIdleTimeoutS = 10;
constexpr int kMaxBuilds = 2;  // expositions built at once: each holds its body (8 MB at 64 workers) until sent
constexpr int kListenBacklog = 64;
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
// zlib's levels 1-3 share its fast matcher and run at the same speed on a 64-worker exposition (8.45 MB: 14.5 ms,
// ~580 MB/s); 3 compresses best of them (233 kB; level 1: 278 kB). Level 4 and up switch to lazy matching: 26 ms at
// level 4, 35 ms at 6 (zlib's default) for 206 kB.
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

// Queues `body` (moved to the heap, freed by libmicrohttpd once sent) with `status` and the headers every answer has.
MHD_Result queue(MHD_Connection* conn, unsigned status, std::string body, bool gzipped = false,
                 const char* content_type = kContentType) {
  auto* held = new std::string(std::move(body));
  MHD_Response* response = MHD_create_response_from_buffer_with_free_callback_cls(
      held->size(), held->data(), [](void* cls) { delete static_cast<std::string*>(cls); }, held);
  if (response == nullptr) {
    delete held;
    return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  }
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (gzipped) MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
  if (status == MHD_HTTP_OK) MHD_add_response_header(response, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  const MHD_Result rc = MHD_queue_response(conn, status, response);
  MHD_destroy_response(response);
  return rc;
}

// 200 with `body`, gzipped when the client accepts it. HEAD gets the same headers (libmicrohttpd sends no body).
MHD_Result respond(MHD_Connection* conn, std::string body) {
  if (accepts_gzip(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING))) {
    if (std::optional<std::string> compressed = gzip(body))
      return queue(conn, MHD_HTTP_OK, std::move(*compressed), true);
  }
  return queue(conn, MHD_HTTP_OK, std::move(body));
}

void log_from_library(void*, const char* format, va_list ap) {
  char text[512];
  std::vsnprintf(text, sizeof text, format, ap);
  std::string_view line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  // What clients do wrong (a request cut short, a connection reset) is theirs; running out of connections is ours.
  if (line.find("limit") != std::string_view::npos) {
    log::warn("http server: {}", line);
  } else {
    log::debug("http server: {}", line);
  }
}

// A closed fd on every early return.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

std::string bind_hint(int err) {
  switch (err) {
    case EADDRINUSE:
      return "is the port already in use? Choose another with --listen HOST:PORT";
    case EADDRNOTAVAIL:
      return "no interface of this host has that address";
    case EACCES:
      return "a port below 1024 needs CAP_NET_BIND_SERVICE";
    case EAFNOSUPPORT:
      return "this host has no IPv6; listen on an IPv4 address (e.g. --listen 0.0.0.0:9477)";
    default:
      return "check --listen HOST:PORT";
  }
}

// The listening socket for `a`: bound and listening, non-blocking, close-on-exec.
int open_listener(const std::string& listen, const ListenAddress& a) {
  auto fail = [&](const char* what, int err) -> ListenError {
    return ListenError("cannot listen on " + listen + " (" + what + ": " + std::strerror(err) + "): " + bind_hint(err));
  };
  const bool v6 = a.family != ListenAddress::Family::kIPv4;
  Fd fd{socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (fd.fd < 0 && v6 && errno == EAFNOSUPPORT && a.host.empty()) {
    // ":PORT" on a kernel booted with ipv6.disable=1: every IPv4 interface is what is left.
    log::info("--listen {}: this host has no IPv6, listening on IPv4 only", listen);
    return open_listener(listen, ListenAddress{ListenAddress::Family::kIPv4, "0.0.0.0", a.port});
  }
  if (fd.fd < 0) throw fail("socket", errno);
  const int one = 1;
  // A restarted agent binds again while the previous one's connections sit in TIME_WAIT.
  if (setsockopt(fd.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) throw fail("SO_REUSEADDR", errno);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    const int v6_only = a.family == ListenAddress::Family::kIPv6Only ? 1 : 0;  // not the sysctl's default
    if (setsockopt(fd.fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only, sizeof v6_only) != 0) throw fail("IPV6_V6ONLY", errno);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<std::uint16_t>(a.port));
    sin6->sin6_addr = in6addr_any;
    if (!a.host.empty()) inet_pton(AF_INET6, a.host.c_str(), &sin6->sin6_addr);
    len = sizeof *sin6;
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<std::uint16_t>(a.port));
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    if (!a.host.empty()) inet_pton(AF_INET, a.host.c_str(), &sin->sin_addr);
    len = sizeof *sin;
  }
  if (bind(fd.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) throw fail("bind", errno);
  if (::listen(fd.fd, kListenBacklog) != 0) throw fail("listen", errno);
  return fd.release();
}

int bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

}  // namespace

MetricsServer::MetricsServer(const std::string& listen)
    : health_body_(to_text({gauge_metric("synapse_profiler_up", "The agent is running.", {gauge_point({}, 1)})})) {
  const ListenAddress address = parse_listen(listen);
  Fd fd{open_listener(listen, address)};
  port_ = bound_port(fd.fd);
  MHD_AccessHandlerCallback handler = [](void* cls, MHD_Connection* conn, const char* url, const char* method,
                                         const char*, const char*, std::size_t*, void**) -> MHD_Result {
    return static_cast<const MetricsServer*>(cls)->answer(conn, url, method) ? MHD_YES : MHD_NO;
  };
  // A thread per connection (see server.h); libmicrohttpd serves no file and no directory, only answer()'s paths.
  const unsigned flags =
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG;
  daemon_.reset(MHD_start_daemon(flags, 0, nullptr, nullptr, handler, this,              //
                                 MHD_OPTION_EXTERNAL_LOGGER, log_from_library, nullptr,  // first, or ignored
                                 MHD_OPTION_LISTEN_SOCKET, fd.fd,                        //
                                 MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,           //
                                 MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutS,           //
                                 MHD_OPTION_END));
  if (!daemon_) {
    throw ListenError("cannot listen on " + listen + " (libmicrohttpd failed to start): check --listen HOST:PORT");
  }
  fd.release();  // the daemon's now: MHD_stop_daemon closes it
}

MetricsServer::~MetricsServer() = default;

void MetricsServer::Stop::operator()(MHD_Daemon* daemon) const { MHD_stop_daemon(daemon); }

void MetricsServer::add(std::shared_ptr<prometheus::Collectable> collectable) {
  const std::lock_guard lock(mutex_);
  collectables_.push_back(std::move(collectable));
}

void MetricsServer::set_ready() { ready_ = true; }

int MetricsServer::port() const { return port_; }

bool MetricsServer::answer(MHD_Connection* conn, const char* url, const char* method) const {
  const std::string_view path(url);
  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    return queue(conn, MHD_HTTP_NOT_FOUND, "not found: this server answers /metrics, /healthz and /readyz\n", false,
                 "text/plain; charset=utf-8");
  }
  const std::string_view m(method);
  if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD)
    return queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "") == MHD_YES;
  if (path == "/healthz") return respond(conn, health_body_) == MHD_YES;
  if (path == "/readyz") {
    if (ready_) return queue(conn, MHD_HTTP_OK, "ready: measuring\n", false, "text/plain; charset=utf-8");
    return queue(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "starting: the first scan has not attached yet\n", false,
                 "text/plain; charset=utf-8");
  }
  return serve_metrics(conn);
}

bool MetricsServer::serve_metrics(MHD_Connection* conn) const {
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
  {
    const std::lock_guard lock(mutex_);
    collectables = collectables_;
  }
  // At most kMaxBuilds expositions in memory at once; the others wait their turn on their own threads.
  {
    std::unique_lock lock(build_mutex_);
    build_done_.wait(lock, [&] { return builds_ < kMaxBuilds; });
    ++builds_;
  }
  struct Done {
    const MetricsServer& s;
    ~Done() {
      {
        const std::lock_guard lock(s.build_mutex_);
        --s.builds_;
      }
      s.build_done_.notify_one();
    }
  } done{*this};
  // Sized like the last body: growing a 10 MB string by doubling cost as much as writing it (copies, page faults).
  std::string body;
  const std::size_t hint = body_size_hint_;
  body.reserve(hint + hint / 8);
  try {
    for (const auto& c : collectables) append_text(body, c->Collect());
  } catch (const std::exception& e) {
    // libmicrohttpd is C: nothing may unwind through it. A failed collection is a failed scrape, not a dead agent.
    log::error("/metrics: collecting the metrics failed: {}", e.what());
    return queue(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "collecting the metrics failed\n", false,
                 "text/plain; charset=utf-8");
  }
  body_size_hint_ = body.size();
  return respond(conn, std::move(body)) == MHD_YES;
}

}  // namespace sp::exporter
