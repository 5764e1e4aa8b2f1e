// A one-purpose HTTP/1.x server on 127.0.0.1:0 for tests that need a hostile or scripted metrics endpoint (the
// scraper's unit tests, the agent's integration tests).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sp {

// A one-purpose HTTP/1.x server: every connection gets its request read (up to the blank line) and is then handed to
// the handler, on its own thread. Destruction stops accepting, tells handlers to give up (stopping()) and joins.
class TestServer {
 public:
  // The handler writes the whole response on fd; the server closes fd afterwards.
  using Handler = std::function<void(TestServer& server, int fd, const std::string& request)>;

  explicit TestServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(listen_fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 64), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TestServer() {
    stopping_ = true;
    acceptor_.join();
    for (auto& t : handlers_) t.join();
    ::close(listen_fd_);
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path = "/_synapse/metrics") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  bool stopping() const { return stopping_; }
  std::vector<std::string> requests() const {
    const std::lock_guard lock(mutex_);
    return requests_;
  }
  int connections() const { return connections_; }

  // send() everything (MSG_NOSIGNAL: a client that hung up gives EPIPE, not SIGPIPE); false once the peer is gone.
  static bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  static std::string response_head(const std::string& status, const std::string& extra_headers) {
    return "HTTP/1.1 " + status + "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n" + extra_headers +
           "Connection: close\r\n\r\n";
  }
  static void respond(int fd, const std::string& body, const std::string& status = "200 OK",
                      const std::string& extra_headers = "") {
    send_all(fd, response_head(status, extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n") +
                     body);
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      handlers_.emplace_back([this, fd] {
        std::string request;
        char buf[4096];
        while (!stopping_ && request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 20) <= 0) continue;
          const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
          if (n <= 0) break;
          request.append(buf, static_cast<std::size_t>(n));
        }
        {
          const std::lock_guard lock(mutex_);
          requests_.push_back(request);
        }
        if (!stopping_) handler_(*this, fd, request);
        ::close(fd);
      });
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::vector<std::thread> handlers_;  // only the acceptor thread touches it until the destructor joins it
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
};

}  // namespace sp
