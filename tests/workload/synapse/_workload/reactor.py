"""A minimal timer loop on the main thread, standing in for Twisted's reactor.

Two ways to wait (``--reactor``):

- ``select`` (the default): ``select.select``; each wake-up that runs due calls is one reactor tick, timed into
  python_twisted_reactor_tick_time (the time spent running calls, not the time spent waiting);
- ``epoll``: ``select.epoll().poll(timeout)``, as Twisted's EPollReactor waits, and timed as Synapse's EpollWrapper
  (synapse/metrics/_reactor_metrics.py) times it: at every poll() call the time since the previous poll() returned
  (since the loop started, for the first) is observed into python_twisted_reactor_tick_time. The loop also counts its
  own polls, and the ticks between one poll's return and the next call (the first poll has none before it), for the
  truth file's ``reactor`` record.

SIGTERM and SIGINT stop the loop: their handlers set a flag and the signal wakeup fd interrupts the wait at once.
"""

import heapq
import itertools
import math
import os
import select
import signal
import time
from functools import partial
from typing import Any, Callable, List, Optional, Tuple

from synapse._workload import metrics

REACTOR_KINDS = ("select", "epoll")


class Reactor:
    def __init__(self, kind: str = "select") -> None:
        if kind not in REACTOR_KINDS:
            raise ValueError(f"unknown reactor {kind!r}")
        self._kind = kind
        # The epoll loop's own count (see the module's docstring): polls, ticks and their total, time in poll().
        self.polls = 0
        self.ticks = 0
        self.tick_ns = 0
        self.wait_ns = 0
        self._calls: List[Tuple[int, int, Callable[[], None]]] = []  # heap of (due_ns, sequence, function)
        self._sequence = itertools.count()
        self._stopping = False
        self.stop_reason = ""
        self._loops: List[Callable[[int], None]] = []  # looping calls waiting for the loop to start
        # Told where each tick begins and ends (epoll loop only): phases.StatePhases.
        self.tick_observer: Optional[Any] = None

    def call_at(self, due_ns: int, function: Callable[[], None]) -> None:
        heapq.heappush(self._calls, (due_ns, next(self._sequence), function))

    def call_later(self, delay: float, function: Callable[[], None]) -> None:
        self.call_at(time.monotonic_ns() + int(delay * 1e9), function)

    def looping_call(self, rate: float, function: Callable[[], None]) -> None:
        """Call function `rate` times per second, the first time when the loop starts running (so a run of D
        seconds makes ceil(D * rate) calls). Missed calls are skipped, not bunched."""
        interval = math.ceil(1e9 / rate)

        def run(due_ns: int) -> None:
            function()
            next_due = due_ns + interval
            now = time.monotonic_ns()
            if next_due <= now:
                next_due += (now - next_due) // interval * interval + interval
            self.call_at(next_due, partial(run, next_due))

        self._loops.append(run)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True
        self.stop_reason = signal.Signals(signum).name

    def run(self, duration: float) -> None:
        """Run due calls until `duration` seconds have passed or a stop signal arrives."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_fd = signal.set_wakeup_fd(wake_write)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            start_ns = time.monotonic_ns()
            for loop in self._loops:
                self.call_at(start_ns, partial(loop, start_ns))
            if self._kind == "epoll":
                self._epoll_loop(start_ns, start_ns + int(duration * 1e9), wake_read)
            else:
                self._loop(start_ns + int(duration * 1e9), wake_read)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_read)
            os.close(wake_write)

    def _loop(self, deadline_ns: int, wake_fd: int) -> None:
        while not self._stopping:
            now = time.monotonic_ns()
            if now >= deadline_ns:
                self.stop_reason = "duration"
                return
            if not self._calls or self._calls[0][0] > now:
                next_ns = min(deadline_ns, self._calls[0][0]) if self._calls else deadline_ns
                readable, _, _ = select.select([wake_fd], [], [], (next_ns - now) / 1e9)
                if readable:
                    os.read(wake_fd, 512)
                continue
            while self._calls and self._calls[0][0] <= now and not self._stopping:
                _, _, function = heapq.heappop(self._calls)
                function()
            metrics.tick_time.observe((time.monotonic_ns() - now) / 1e9)

    def _epoll_loop(self, start_ns: int, deadline_ns: int, wake_fd: int) -> None:
        poller = select.epoll()
        try:
            poller.register(wake_fd, select.EPOLLIN)
            last_return: Optional[int] = None  # the previous poll()'s return: the tick in progress began there
            while not self._stopping:
                now = time.monotonic_ns()
                if now >= deadline_ns:
                    self.stop_reason = "duration"
                    return
                if not self._calls or self._calls[0][0] > now:
                    next_ns = min(deadline_ns, self._calls[0][0]) if self._calls else deadline_ns
                    metrics.tick_time.observe(
                        (time.monotonic_ns() - (start_ns if last_return is None else last_return)) / 1e9)
                    if self.tick_observer is not None:
                        self.tick_observer.tick_ends()
                    # The truth's clock reads sit right around the call: the metric's own cost is part of the tick.
                    call_ns = time.monotonic_ns()
                    if last_return is not None:
                        self.ticks += 1
                        self.tick_ns += call_ns - last_return
                    # Never negative: epoll.poll() would wait forever (the call may have come due meanwhile).
                    events = poller.poll(max(0, next_ns - call_ns) / 1e9)
                    last_return = time.monotonic_ns()
                    if self.tick_observer is not None:
                        self.tick_observer.tick_begins()
                    self.polls += 1
                    self.wait_ns += last_return - call_ns
                    if events:
                        os.read(wake_fd, 512)
                    continue
                while self._calls and self._calls[0][0] <= now and not self._stopping:
                    _, _, function = heapq.heappop(self._calls)
                    function()
        finally:
            poller.close()
