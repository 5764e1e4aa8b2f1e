"""Media-store file I/O on a thread of its own, as Synapse writes uploaded media from a thread pool.

Each job writes one file of ``io_bytes`` and fsyncs it. With direct I/O the file is opened with O_DIRECT, written
from a page-aligned buffer (an anonymous mmap) and then read back with O_DIRECT into another one, so both reach the
block layer. Files rotate over a few names and are removed at the end.
"""

import mmap
import os
import queue
import sys
import threading
import time
from typing import Callable, Optional, Set

from synapse._workload.truth import Recorder

_FILES_KEPT = 8


class MediaStoreError(Exception):
    pass


def _write_all(fd: int, data: memoryview) -> int:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])
    return done


def _read_all(fd: int, buffer: memoryview) -> int:
    done = 0
    while done < len(buffer):
        n = os.readv(fd, [buffer[done:]])
        if n == 0:
            break
        done += n
    return done


class MediaStore:
    def __init__(self, directory: str, size: int, direct: bool, recorder: Recorder):
        self._directory = directory
        self._size = size
        self._direct = direct
        self._recorder = recorder
        self._queue: "queue.Queue[Optional[int]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._written: Set[str] = set()
        self._out = mmap.mmap(-1, size)
        self._out.write(bytes(range(256)) * (size // 256) + bytes(range(size % 256)))
        self._in = mmap.mmap(-1, size) if direct else None
        self._errors_reported = False

    def prepare(self) -> None:
        """Create the directory and check that it accepts the kind of I/O asked for (raise MediaStoreError)."""
        try:
            os.makedirs(self._directory, exist_ok=True)
            probe = os.path.join(self._directory, f".workload-probe-{os.getpid()}")
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | (os.O_DIRECT if self._direct else 0), 0o644)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            what = "with O_DIRECT " if self._direct else ""
            raise MediaStoreError(f"cannot create files {what}in media directory {self._directory!r}: "
                                  f"{e.strerror or e}") from e

    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker, name="media", daemon=True)
        self._thread.start()

    def store(self, n: int) -> None:
        """Queue the n-th media file."""
        self._queue.put(n)

    def _worker(self) -> None:
        while True:
            n = self._queue.get()
            if n is None:
                break
            self._store(os.path.join(self._directory, f"workload-{os.getpid()}-{n % _FILES_KEPT}"))

    def _io(self, op: str, path: str, flags: int, transfer: Callable[[int], int]) -> bool:
        direct = self._direct
        start_ns = time.monotonic_ns()
        nbytes, error = 0, None
        try:
            fd = os.open(path, flags | (os.O_DIRECT if direct else 0), 0o644)
            try:
                nbytes = transfer(fd)
                if op == "write":
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            error = f"{e.strerror or e}"
            if not self._errors_reported:
                self._errors_reported = True
                print(f"error: media {op} of {path}: {error}", file=sys.stderr)
        end_ns = time.monotonic_ns()
        self._recorder.io(op=op, nbytes=nbytes, start_ns=start_ns, end_ns=end_ns, error=error, path=path,
                          direct=direct, tid=threading.get_native_id())
        return error is None

    def _store(self, path: str) -> None:
        self._written.add(path)
        wrote = self._io("write", path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         lambda fd: _write_all(fd, memoryview(self._out)))
        if wrote and self._in is not None:
            self._io("read", path, os.O_RDONLY, lambda fd: _read_all(fd, memoryview(self._in)))

    def stop(self, timeout: float) -> None:
        """Finish the file in progress (queued ones are dropped) and remove the files written."""
        if self._thread is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(None)
            self._thread.join(timeout)
        for path in sorted(self._written):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
