// Waits for the next drain of the probes' ring buffers: a timer tick, a ring that filled past its wakeup mark, or an
// interrupt from another thread (stop).
//
// The BPF programs submit records without waking anyone, except when a record takes a ring past a quarter, a half or three quarters full
// (sp_ring_wake() in bpf/bpf_common.h). The rings are watched edge-triggered: a ring's descriptor is readable as long
// as it holds any data, so a level-triggered wait would return at once after the first record and turn the timer
// into a busy loop; edge-triggered, only those forced wakeups end the wait early.
#pragma once

#include <chrono>
#include <string>

#include "core/util/fd.h"

namespace sp {

class RingWaker {
 public:
  enum class Woken { Timeout, Ring, Interrupt };

  // Throws std::system_error when the kernel refuses an epoll instance or an eventfd.
  RingWaker();
  RingWaker(const RingWaker&) = delete;
  RingWaker& operator=(const RingWaker&) = delete;

  // Watches a descriptor (a BPF_MAP_TYPE_RINGBUF map's; any pollable one in tests). False (with `error`) when epoll refuses it.
  bool watch(int ring_fd, std::string& error);
  // Blocks until a watched ring asks to be drained, interrupt() is called, or `timeout` passes. A pending interrupt
  // is consumed by the wait that sees it.
  Woken wait(std::chrono::milliseconds timeout);
  // Ends the current (or the next) wait(); safe from any thread and from a signal handler.
  void interrupt();

 private:
  Fd epoll_;
  Fd event_;
};

}  // namespace sp
