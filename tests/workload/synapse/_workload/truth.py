"""Ground truth: every GC pause, query, transaction and file operation the workload performs.

Records go to a JSON-lines file (one object per line, flushed at once, written under a lock so threads never
interleave) and are folded into the totals of the final ``summary`` line. All timestamps are
``time.monotonic_ns()``, i.e. CLOCK_MONOTONIC, the clock BPF's ``bpf_ktime_get_ns()`` uses.
"""

import bisect
import json
import threading
from array import array
from collections import defaultdict
from typing import Any, Dict, Optional, TextIO


def _overlap_ns(queries: "array[int]", gc_starts: "array[int]", gc_ends: "array[int]") -> int:
    """Sum over the (start, end) pairs in ``queries`` of their overlap with the GC pauses.

    GC pauses all happen on the main thread, so they are disjoint and already sorted."""
    total = 0
    for i in range(0, len(queries), 2):
        q_start, q_end = queries[i], queries[i + 1]
        j = bisect.bisect_right(gc_ends, q_start)
        while j < len(gc_starts) and gc_starts[j] < q_end:
            total += max(0, min(q_end, gc_ends[j]) - max(q_start, gc_starts[j]))
            j += 1
    return total


class Recorder:
    """Thread-safe sink for ground-truth records; without a path it only keeps the totals."""

    def __init__(self, path: Optional[str]):
        self._lock = threading.Lock()
        self._file: Optional[TextIO] = open(path, "w", encoding="utf-8") if path else None
        self._gc: Dict[str, Dict[str, int]] = defaultdict(lambda: {"count": 0, "ns": 0, "collected": 0})
        self._verbs: Dict[str, Dict[str, int]] = defaultdict(lambda: {"count": 0, "ns": 0, "errors": 0})
        self._txns: Dict[str, Dict[str, int]] = defaultdict(lambda: {"count": 0, "ns": 0, "errors": 0})
        self._io: Dict[str, Dict[str, int]] = defaultdict(lambda: {"count": 0, "ns": 0, "bytes": 0, "errors": 0})
        # Intervals for the overlap totals, kept only when there is a file to report them in.
        self._gc_starts: "array[int]" = array("q")
        self._gc_ends: "array[int]" = array("q")
        self._query_exec: "array[int]" = array("q")
        self._query_timed: "array[int]" = array("q")

    def _write(self, record: Dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()

    def start(self, **fields: Any) -> None:
        with self._lock:
            self._write({"type": "start", **fields})

    def event(self, kind: str, **fields: Any) -> None:
        """A one-off marker record (e.g. "gate": the moment activity starts)."""
        with self._lock:
            self._write({"type": kind, **fields})

    def gc(self, *, gen: int, start_ns: int, end_ns: int, collected: int, tid: int, reason: str) -> None:
        with self._lock:
            totals = self._gc[str(gen)]
            totals["count"] += 1
            totals["ns"] += end_ns - start_ns
            totals["collected"] += collected
            if self._file is not None:
                self._gc_starts.append(start_ns)
                self._gc_ends.append(end_ns)
            self._write({"type": "gc", "gen": gen, "start_ns": start_ns, "end_ns": end_ns, "collected": collected,
                         "tid": tid, "reason": reason})

    def query(self, *, verb: str, start_ns: int, end_ns: int, exec_start_ns: int, exec_end_ns: int,
              error: Optional[str], **fields: Any) -> None:
        with self._lock:
            totals = self._verbs[verb]
            totals["count"] += 1
            totals["ns"] += end_ns - start_ns
            totals["errors"] += error is not None
            if self._file is not None:
                self._query_exec.extend((exec_start_ns, exec_end_ns))
                self._query_timed.extend((start_ns, end_ns))
            self._write({"type": "query", "verb": verb, "start_ns": start_ns, "end_ns": end_ns,
                         "exec_start_ns": exec_start_ns, "exec_end_ns": exec_end_ns, **fields,
                         **({"error": error} if error is not None else {})})

    def transaction(self, *, desc: str, start_ns: int, end_ns: int, error: Optional[str], **fields: Any) -> None:
        with self._lock:
            totals = self._txns[desc]
            totals["count"] += 1
            totals["ns"] += end_ns - start_ns
            totals["errors"] += error is not None
            self._write({"type": "transaction", "desc": desc, "start_ns": start_ns, "end_ns": end_ns, **fields,
                         **({"error": error} if error is not None else {})})

    def io(self, *, op: str, nbytes: int, start_ns: int, end_ns: int, error: Optional[str], **fields: Any) -> None:
        with self._lock:
            totals = self._io[op]
            totals["count"] += 1
            totals["ns"] += end_ns - start_ns
            totals["bytes"] += nbytes
            totals["errors"] += error is not None
            self._write({"type": "io", "op": op, "bytes": nbytes, "start_ns": start_ns, "end_ns": end_ns, **fields,
                         **({"error": error} if error is not None else {})})

    def close(self, **fields: Any) -> None:
        """Write the summary line (totals, GC/query overlap) and close the file."""
        with self._lock:
            summary = {
                "type": "summary", **fields,
                "gc": dict(self._gc), "queries": dict(self._verbs), "transactions": dict(self._txns),
                "io": dict(self._io),
                "io_bytes_written": self._io["write"]["bytes"] if "write" in self._io else 0,
                "io_bytes_read": self._io["read"]["bytes"] if "read" in self._io else 0,
                "gc_overlap_exec_ns": _overlap_ns(self._query_exec, self._gc_starts, self._gc_ends),
                "gc_overlap_timed_ns": _overlap_ns(self._query_timed, self._gc_starts, self._gc_ends),
            }
            self._write(summary)
            if self._file is not None:
                self._file.close()
                self._file = None
