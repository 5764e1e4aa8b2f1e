"""A minimal timer loop on the main thread, standing in for Twisted's reactor.

Each wake-up that runs due calls is one reactor tick, timed into python_twisted_reactor_tick_time (the time spent
running calls, not the time spent waiting). SIGTERM and SIGINT stop the loop: their handlers set a flag and the
signal wakeup fd interrupts the wait at once.
"""

import heapq
import itertools
import math
import os
import select
import signal
import time
from functools import partial
from typing import Callable, List, Tuple

from synapse._workload import metrics


class Reactor:
    def __init__(self) -> None:
        self._calls: List[Tuple[int, int, Callable[[], None]]] = []  # heap of (due_ns, sequence, function)
        self._sequence = itertools.count()
        self._stopping = False
        self.stop_reason = ""
        self._loops: List[Callable[[int], None]] = []  # looping calls waiting for the loop to start

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
