// The agent's HTTP server serves /metrics, /healthz and /readyz and nothing else: no index, no debug page, no file, whatever
// the path or method, so nothing beyond the metrics (never SQL or config values) can be read from it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

namespace {

// One raw HTTP/1.0 exchange with 127.0.0.1:port; returns the status line.
std::string status_line(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return response.substr(0, response.find("\r\n"));
}

}  // namespace

TEST(EndpointsIT, OnlyMetricsHealthAndReadinessAreServed) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  std::string dir = sp::test::make_temp_dir("sp-endpoints-it");
  sp::test::AgentProcess agent(dir);
  ASSERT_TRUE(agent.running()) << agent.log();
  EXPECT_NE(status_line(agent.port(), "GET /metrics HTTP/1.0\r\n\r\n").find(" 200"), std::string::npos);
  EXPECT_NE(status_line(agent.port(), "GET /healthz HTTP/1.0\r\n\r\n").find(" 200"), std::string::npos);
  EXPECT_NE(status_line(agent.port(), "GET /readyz HTTP/1.0\r\n\r\n").find(" 200"), std::string::npos);
  // Exact paths only: /metrics/x, /healthz/x and /readyz/x are not answered either.
  for (const char* path : {"/", "/debug", "/debug/pprof", "/config", "/metrics/../etc/passwd", "/../../etc/passwd",
                           "/favicon.ico", "/api/v1/query", "/etc/passwd", "/metrics/x", "/healthz/x",
                           "/readyz/x"}) {
    const std::string line = status_line(agent.port(), std::string("GET ") + path + " HTTP/1.0\r\n\r\n");
    EXPECT_EQ(line.find(" 200"), std::string::npos) << path << ": " << line;
  }
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    const std::string line = status_line(agent.port(), std::string(method) + " /metrics HTTP/1.0\r\n\r\n");
    EXPECT_EQ(line.find(" 200"), std::string::npos) << method << ": " << line;
  }
  EXPECT_TRUE(agent.stop());
}
