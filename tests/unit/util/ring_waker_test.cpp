// RingWaker: a watched descriptor ends a wait only when it is signalled anew (edge-triggered: data left unread does
// not end the next wait, which is what keeps a ring that always holds a few records from turning the agent's
// 250 ms timer into a busy loop), interrupt() ends a wait from another thread, once, and bad descriptors are refused.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/util/ring_waker.h"

namespace {

using namespace std::chrono_literals;
using sp::RingWaker;

struct Pipe {
  Pipe() { EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0); }
  ~Pipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  void put() { ASSERT_EQ(::write(fds[1], "x", 1), 1); }
  int fds[2] = {-1, -1};
};

// Has `w` watch the pipe's read end.
void watch(RingWaker& w, const Pipe& p) {
  std::string error;
  ASSERT_TRUE(w.watch(p.fds[0], error)) << error;
}

TEST(RingWaker, NothingHappensIsATimeout) {
  RingWaker w;
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(watch(w, p));
  EXPECT_EQ(w.wait(1ms), RingWaker::Woken::Timeout);
  EXPECT_EQ(w.wait(0ms), RingWaker::Woken::Timeout);
}

TEST(RingWaker, OnlyNewSignalsEndAWait) {
  RingWaker w;
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(watch(w, p));
  p.put();
  EXPECT_EQ(w.wait(5s), RingWaker::Woken::Ring);
  // The byte is still unread: a level-triggered wait would return at once, forever.
  EXPECT_EQ(w.wait(1ms), RingWaker::Woken::Timeout);
  p.put();
  EXPECT_EQ(w.wait(5s), RingWaker::Woken::Ring);
}

TEST(RingWaker, AnyOfSeveralDescriptorsWakes) {
  RingWaker w;
  Pipe a, b;
  ASSERT_NO_FATAL_FAILURE(watch(w, a));
  ASSERT_NO_FATAL_FAILURE(watch(w, b));
  b.put();
  EXPECT_EQ(w.wait(5s), RingWaker::Woken::Ring);
  EXPECT_EQ(w.wait(1ms), RingWaker::Woken::Timeout);
}

TEST(RingWaker, InterruptEndsOneWaitFromAnotherThread) {
  RingWaker w;
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    w.interrupt();
  });
  // A wait of a minute ends with the interrupt (if interrupt() were lost this would take the whole minute and fail).
  EXPECT_EQ(w.wait(60s), RingWaker::Woken::Interrupt);
  t.join();
  EXPECT_EQ(w.wait(1ms), RingWaker::Woken::Timeout);  // consumed
}

TEST(RingWaker, InterruptBeforeTheWaitIsKept) {
  RingWaker w;
  w.interrupt();
  w.interrupt();
  EXPECT_EQ(w.wait(60s), RingWaker::Woken::Interrupt);
  EXPECT_EQ(w.wait(1ms), RingWaker::Woken::Timeout);
}

TEST(RingWaker, InterruptWinsOverARing) {
  RingWaker w;
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(watch(w, p));
  p.put();
  w.interrupt();
  EXPECT_EQ(w.wait(5s), RingWaker::Woken::Interrupt);
}

TEST(RingWaker, RefusesWhatEpollCannotWatch) {
  RingWaker w;
  std::string error;
  EXPECT_FALSE(w.watch(-1, error));
  EXPECT_NE(error.find("ring buffer fd -1"), std::string::npos) << error;
  // A regular file cannot be polled.
  const int f = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(f, 0);
  error.clear();
  EXPECT_FALSE(w.watch(f, error));
  EXPECT_FALSE(error.empty());
  ::close(f);
}

}  // namespace
