#include "core/util/ring_waker.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

namespace sp {

namespace {
constexpr std::uint64_t kInterruptTag = ~std::uint64_t{0};
}

RingWaker::RingWaker()
    : epoll_(epoll_create1(EPOLL_CLOEXEC)), event_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!epoll_.valid() || !event_.valid()) throw std::system_error(errno, std::generic_category(), "epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;  // level-triggered: an interrupt stays pending until a wait consumes it
  ev.data.u64 = kInterruptTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, event_.get(), &ev) != 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(eventfd)");
  }
}

bool RingWaker::watch(int ring_fd, std::string& error) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = static_cast<std::uint64_t>(ring_fd);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ring_fd, &ev) == 0) return true;
  error = "epoll_ctl(ring buffer fd " + std::to_string(ring_fd) + "): " + std::strerror(errno);
  return false;
}

RingWaker::Woken RingWaker::wait(std::chrono::milliseconds timeout) {
  epoll_event events[16];
  const int ms = timeout.count() < 0 ? 0 : static_cast<int>(timeout.count());
  int n = epoll_wait(epoll_.get(), events, 16, ms);
  if (n <= 0) return Woken::Timeout;  // EINTR counts as a timeout: the caller polls and waits again
  Woken woken = Woken::Ring;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 != kInterruptTag) continue;
    std::uint64_t count = 0;
    if (read(event_.get(), &count, sizeof count) < 0) {
      // EAGAIN: another wait consumed it first; nothing else can fail on an eventfd read of 8 bytes
    }
    woken = Woken::Interrupt;
  }
  return woken;
}

void RingWaker::interrupt() {
  const std::uint64_t one = 1;
  if (write(event_.get(), &one, sizeof one) < 0) {
    // EAGAIN only when the counter is at its maximum: an interrupt is pending anyway
  }
}

}  // namespace sp
