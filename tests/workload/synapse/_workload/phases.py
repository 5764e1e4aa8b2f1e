"""Scripted thread-state phases on the reactor thread (``--state-phases``), each run as one reactor tick, recording
the thread's own truth per state for the profiler's thread-state tests (issue 21).

The truth comes from the process itself: time.thread_time_ns() (CPU time), time.monotonic_ns() (wall time) and the
kernel's run-queue delay of the thread (second field of /proc/self/task/TID/schedstat, the time it was runnable but
not running), read around each phase. The phases, one tick each, with idle waits in epoll between them:

- cpu: pure Python for CPU_SECONDS of wall time;
- runqueue: the same on a CPU shared with a busy process pinned there (os.sched_setaffinity): about half the time
  runnable without a CPU;
- lock: a threading.Lock held by another thread that sleeps LOCK_SECONDS before releasing it (a futex wait); that
  thread records its own life (CPU time, sleep, run-queue delay) and exits;
- disk: O_DIRECT reads of 4 KiB blocks of a file written and synced before the gate, for DISK_SECONDS.

The reactor also tells the phases where each tick starts and ends (after a poll returns, before the next call), so
that the record holds the CPU time and run-queue delay of the reactor inside ticks ("busy"), all ticks included.
"""

import mmap
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

CPU_SECONDS = 0.15
RUNQUEUE_SECONDS = 0.2
LOCK_SECONDS = 0.15
DISK_SECONDS = 0.1
GAP_SECONDS = 0.05  # idle in epoll between phases
BLOCK = 4096
FILE_BLOCKS = 2048  # 8 MiB

_SPINNER = """
import os, sys, time
os.sched_setaffinity(0, {%d})
sys.stdout.write("x")
sys.stdout.flush()
end = time.monotonic() + 5
while time.monotonic() < end:
    pass
"""


class RunDelay:
    """The calling thread's cumulative run-queue delay in ns (schedstat), read through a descriptor kept open."""

    def __init__(self) -> None:
        self._fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)

    def __call__(self) -> int:
        return int(os.pread(self._fd, 128, 0).split()[1])

    def close(self) -> None:
        os.close(self._fd)


class Sample:
    def __init__(self, run_delay: RunDelay) -> None:
        self.wall = time.monotonic_ns()
        self.cpu = time.thread_time_ns()
        self.run_delay = run_delay()


def _off_cpu(before: Sample, after: Sample) -> int:
    """Wall time neither running nor runnable between two samples."""
    return (after.wall - before.wall) - (after.cpu - before.cpu) - (after.run_delay - before.run_delay)


def _spin(until_ns: int) -> None:
    while time.monotonic_ns() < until_ns:
        sum(range(500))


class StatePhases:
    """Owned by the reactor thread: prepare() before the gate, schedule() on the loop, record() at the end."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._path = os.path.join(directory, f"state-phases-{os.getpid()}.bin")
        self._run_delay: Optional[RunDelay] = None
        self._tick: Optional[Sample] = None
        self._wait: Optional[Sample] = None
        self.busy_cpu_ns = 0
        self.busy_run_delay_ns = 0
        self.wait_off_cpu_ns = 0  # in poll(), neither running nor runnable
        self.busy_off_cpu_ns = 0  # in ticks, neither running nor runnable (the lock and disk phases, and the rest)
        self.phases: Dict[str, Dict[str, int]] = {}
        self.holder: Dict[str, int] = {}
        self._spinner: Optional[subprocess.Popen] = None
        self.done = False

    def prepare(self) -> None:
        os.makedirs(self._directory, exist_ok=True)
        with open(self._path, "wb") as f:
            f.write(os.urandom(BLOCK * FILE_BLOCKS))
            f.flush()
            os.fsync(f.fileno())
        self._run_delay = RunDelay()

    # The reactor's tick boundaries.
    def tick_begins(self) -> None:
        assert self._run_delay is not None
        self._tick = Sample(self._run_delay)
        if self._wait is not None:
            self.wait_off_cpu_ns += _off_cpu(self._wait, self._tick)

    def tick_ends(self) -> None:
        assert self._run_delay is not None
        self._wait = Sample(self._run_delay)
        if self._tick is None:
            return
        self.busy_cpu_ns += self._wait.cpu - self._tick.cpu
        self.busy_run_delay_ns += self._wait.run_delay - self._tick.run_delay
        self.busy_off_cpu_ns += _off_cpu(self._tick, self._wait)
        self._tick = None

    def schedule(self, call_later: Callable[[float, Callable[[], None]], None]) -> None:
        steps: List[Callable[[], None]] = [self._cpu, self._start_spinner, self._runqueue, self._lock, self._disk,
                                           self._finish]

        def step(i: int) -> None:
            if steps[i]() is False:  # not ready yet: again after a gap
                call_later(GAP_SECONDS, lambda: step(i))
            elif i + 1 < len(steps):
                call_later(GAP_SECONDS, lambda: step(i + 1))

        call_later(GAP_SECONDS, lambda: step(0))

    def _measure(self, name: str, body: Callable[[], Any]) -> Any:
        """Runs body() and records its wall time, CPU time, run-queue delay and the rest (off CPU)."""
        assert self._run_delay is not None
        before = Sample(self._run_delay)
        result = body()
        after = Sample(self._run_delay)
        self.phases[name] = {"wall_ns": after.wall - before.wall, "cpu_ns": after.cpu - before.cpu,
                             "run_delay_ns": after.run_delay - before.run_delay, "off_cpu_ns": _off_cpu(before, after)}
        return result

    def _cpu(self) -> None:
        self._measure("cpu", lambda: _spin(time.monotonic_ns() + int(CPU_SECONDS * 1e9)))

    def _start_spinner(self) -> None:
        cpu = min(os.sched_getaffinity(0))
        self._spinner_cpu = cpu
        # A separate program (not a fork of this worker): a profiler's discovery must not take it for a worker.
        self._spinner = subprocess.Popen([sys.executable, "-c", _SPINNER % cpu], stdout=subprocess.PIPE)
        os.set_blocking(self._spinner.stdout.fileno(), False)

    def _runqueue(self) -> Optional[bool]:
        assert self._spinner is not None and self._spinner.stdout is not None
        try:
            ready = os.read(self._spinner.stdout.fileno(), 1)
        except BlockingIOError:
            return False
        if not ready:
            raise RuntimeError("the spinner process exited before the run-queue phase")
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self._spinner_cpu})  # this thread only
        try:
            self._measure("runqueue", lambda: _spin(time.monotonic_ns() + int(RUNQUEUE_SECONDS * 1e9)))
        finally:
            os.sched_setaffinity(0, allowed)
            self._spinner.kill()
        return None

    def _lock(self) -> None:
        lock = threading.Lock()
        holding = threading.Event()

        def hold() -> None:
            start = time.monotonic_ns()
            run_delay = RunDelay()
            delay0 = run_delay()
            with lock:
                holding.set()
                before = Sample(run_delay)
                time.sleep(LOCK_SECONDS)
                slept = _off_cpu(before, Sample(run_delay))
            self.holder = {"tid": threading.get_native_id(), "sleep_off_cpu_ns": slept,
                           "run_delay_ns": run_delay() - delay0, "cpu_ns": time.thread_time_ns(),
                           "life_ns": time.monotonic_ns() - start}
            run_delay.close()

        holder = threading.Thread(target=hold, name="lock-holder")
        holder.start()
        holding.wait()
        self._measure("lock", lambda: lock.acquire())
        lock.release()
        holder.join()

    def _disk(self) -> None:
        fd = os.open(self._path, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants
        reads = 0

        def read() -> None:
            nonlocal reads
            end = time.monotonic_ns() + int(DISK_SECONDS * 1e9)
            rng = random.Random(7)
            while time.monotonic_ns() < end:
                if os.preadv(fd, [buf], rng.randrange(FILE_BLOCKS) * BLOCK) != BLOCK:
                    raise RuntimeError("short O_DIRECT read")
                reads += 1

        try:
            self._measure("disk", read)
        finally:
            os.close(fd)
            buf.close()
        self.phases["disk"]["reads"] = reads

    def _finish(self) -> None:
        if self._spinner is not None:
            self._spinner.wait()
        self.done = True

    def record(self) -> Dict[str, Any]:
        # After the loop, outside any tick: removing the file may wait for the file system's journal (a disk wait
        # that is not the disk phase's).
        os.unlink(self._path)
        return {"tid": threading.get_native_id(), "done": self.done, "busy_cpu_ns": self.busy_cpu_ns,
                "busy_run_delay_ns": self.busy_run_delay_ns,
                "wait_off_cpu_ns": self.wait_off_cpu_ns, "busy_off_cpu_ns": self.busy_off_cpu_ns, "phases": self.phases, "holder": self.holder}
