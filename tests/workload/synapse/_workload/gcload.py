"""Garbage collection as Synapse does it: automatic GC off, explicit gc.collect(gen) on the main thread.

Before each collection a number of reference cycles is allocated, so every collection has real work and a known
minimum of unreachable objects. Each collection is timed with time.monotonic_ns() (CLOCK_MONOTONIC) immediately
around gc.collect() and exported as python_gc_time / python_gc_unreachable_total.
"""

import gc
import threading
import time
from typing import List

from synapse._workload import metrics
from synapse._workload.truth import Recorder

OBJECTS_PER_CYCLE = 2  # each reference cycle is a list and a dict pointing at each other


def _make_cycles(count: int) -> None:
    for _ in range(count):
        node: list = []
        node.append({"parent": node})


class GarbageCollector:
    def __init__(self, recorder: Recorder, cycles_per_collection: int, live_heap: int):
        self._recorder = recorder
        self._cycles = cycles_per_collection
        # Long-lived objects that every full collection has to traverse (--gc-hold-query makes pauses long).
        self._heap: List[list] = [[i] for i in range(live_heap)]

    def collect(self, gen: int, reason: str) -> None:
        _make_cycles(self._cycles)
        start_ns = time.monotonic_ns()
        collected = gc.collect(gen)
        end_ns = time.monotonic_ns()
        metrics.gc_unreachable.labels(str(gen)).set(collected)
        metrics.gc_time.labels(str(gen)).observe((end_ns - start_ns) / 1e9)
        self._recorder.gc(gen=gen, start_ns=start_ns, end_ns=end_ns, collected=collected,
                          tid=threading.get_native_id(), reason=reason)
