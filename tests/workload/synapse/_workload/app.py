"""Process entry point shared by synapse.app.homeserver, synapse.app.generic_worker and synapse.app.synchrotron.

Exit status: 0 after a clean run (duration reached, or SIGTERM/SIGINT), 1 when the start failed (database, metrics
port, media directory) or a transaction failed during the run, 2 for a bad command line or configuration.
"""

import gc
import itertools
import os
import sys
import threading
import time
from functools import partial
from typing import Any, Dict, List, Optional

import psycopg2

from synapse._workload.config import Config, ConfigError, load
from synapse._workload.gcload import GarbageCollector
from synapse._workload.media import MediaStore, MediaStoreError
from synapse._workload.metrics import start_listeners
from synapse._workload.phases import StatePhases
from synapse._workload.reactor import Reactor
from synapse._workload.storage import DatabasePool, describe_target
from synapse._workload.store import DataStore
from synapse._workload.truth import Recorder

_SHUTDOWN_TIMEOUT = 10.0  # seconds granted to running transactions and file writes at the end


class StartupError(Exception):
    pass


class Workload:
    def __init__(self, config: Config, recorder: Recorder):
        self._config = config
        self._recorder = recorder
        self._reactor = Reactor(config.reactor)
        self._gc = GarbageCollector(recorder, config.garbage_per_gc,
                                    config.hold_heap if config.gc_hold_query is not None else 0)
        self._pool: Optional[DatabasePool] = None
        self._store: Optional[DataStore] = None
        self._media: Optional[MediaStore] = None
        self._phases: Optional[StatePhases] = None
        if config.state_phases:
            self._phases = StatePhases(config.media_dir)

    def start(self) -> List[int]:
        """Bind the metrics listeners, write the start record, connect and create the schema; return the ports."""
        config = self._config
        if self._phases is not None:
            self._phases.prepare()
        if config.io_rate > 0:
            self._media = MediaStore(config.media_dir, config.io_bytes, config.direct_io, self._recorder)
            try:
                self._media.prepare()
            except MediaStoreError as e:
                raise StartupError(str(e)) from e

        ports: List[int] = []
        if config.enable_metrics:
            try:
                ports = start_listeners(config.metrics_listeners)
            except OSError as e:
                raise StartupError(f"metrics listener: {e}") from e
        elif config.metrics_listeners:
            print("warning: a metrics listener is configured but enable_metrics is not true: not serving metrics",
                  file=sys.stderr)

        self._recorder.start(
            pid=os.getpid(), tid=threading.get_native_id(), worker_name=config.worker_name,
            worker_app=config.worker_app, app=config.app, metrics_port=ports[0] if ports else None,
            metrics_ports=ports, config_files=list(config.config_files), start_ns=time.monotonic_ns(),
            duration=config.duration, gc_schedule={str(g): r for g, r in config.gc_schedule.items()},
            garbage_per_gc=config.garbage_per_gc, query_rate=config.query_rate,
            threads=config.threads if config.db_args else 0, io_rate=config.io_rate, io_bytes=config.io_bytes,
            direct_io=config.direct_io, media_dir=os.path.abspath(config.media_dir),
            gc_hold_query=config.gc_hold_query, query_sleep=config.query_sleep,
            database=describe_target(config.db_args) if config.db_args else None)

        if config.db_args is not None:
            self._pool = DatabasePool(config.db_args, config.threads, self._recorder, config.query_sleep)
            try:
                self._pool.connect()
            except psycopg2.Error as e:
                raise StartupError(f"cannot connect to PostgreSQL at {describe_target(config.db_args)}: "
                                   f"{' '.join(str(e).split())}") from e
            self._store = DataStore(self._pool, config.slow_query, config.scan_table, config.bare_queries)
            try:
                self._store.create_schema()
            except psycopg2.Error as e:
                raise StartupError(f"cannot create the workload's tables: {' '.join(str(e).split())}") from e
            self._pool.start()
        return ports

    def _hold_and_collect(self) -> None:
        """Hold a query open in a pool thread and run a full collection of the big heap while it is running."""
        assert self._store is not None and self._config.gc_hold_query is not None
        seconds = self._config.gc_hold_query
        started = self._store.hold_connection(seconds)

        def collect() -> None:
            started.wait(seconds)
            self._gc.collect(2, "hold")

        self._reactor.call_later(seconds / 4, collect)

    def run(self) -> str:
        """Run the schedule on the main thread until the duration is over or a signal arrives; return why."""
        config = self._config
        for gen, rate in sorted(config.gc_schedule.items()):
            self._reactor.looping_call(rate, partial(self._gc.collect, gen, "schedule"))
        if self._store is not None:
            if config.query_rate > 0:
                self._reactor.looping_call(config.query_rate, self._store.handle_request)
            if config.gc_hold_query is not None:
                self._reactor.looping_call(1 / (2 * config.gc_hold_query), self._hold_and_collect)
        if self._media is not None:
            self._media.start()
            files = itertools.count()
            self._reactor.looping_call(config.io_rate, lambda: self._media.store(next(files)))
        if self._phases is not None:
            self._reactor.tick_observer = self._phases
            self._phases.schedule(self._reactor.call_later)
        self._reactor.run(config.duration)
        if config.reactor == "epoll":
            r = self._reactor
            self._recorder.event("reactor", tid=threading.get_native_id(), polls=r.polls, ticks=r.ticks,
                                 tick_ns=r.tick_ns, wait_ns=r.wait_ns)
        if self._phases is not None:
            self._recorder.event("thread_states", **self._phases.record())
        return self._reactor.stop_reason

    def shutdown(self, **summary: Any) -> int:
        """Stop the threads, write the summary record; return the exit status."""
        failures = 0
        fields: Dict[str, Any] = dict(summary)
        if self._pool is not None:
            fields["dropped_interactions"] = self._pool.stop(_SHUTDOWN_TIMEOUT)
            failures = self._pool.failures
            fields["failed_interactions"] = failures
        if self._media is not None:
            self._media.stop(_SHUTDOWN_TIMEOUT)
        self._recorder.close(end_ns=time.monotonic_ns(), **fields)
        if failures:
            print(f"error: {failures} database transaction(s) failed", file=sys.stderr)
        return 1 if failures or "error" in fields else 0


def exit_now(status: int) -> None:
    """Exits without interpreter finalization. Finalization runs garbage collections of its own (gen 2, after the
    truth file is closed); skipping it keeps the truth file a complete record of every collection the process made."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def wait_for_gate(path: str, timeout: float) -> bool:
    """Polls for `path`; the workload's duration bounds the wait so that the process always stops by itself."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def main(app: str) -> int:
    try:
        config = load(app, sys.argv[1:])
    except ConfigError as e:
        print(f"{app}: error: {e}", file=sys.stderr)
        return 2
    gc.disable()
    try:
        recorder = Recorder(config.truth)
    except OSError as e:
        print(f"{app}: error: cannot write the truth file {config.truth!r}: {e.strerror or e}", file=sys.stderr)
        return 2
    workload = Workload(config, recorder)
    try:
        ports = workload.start()
    except StartupError as e:
        print(f"{app}: error: {e}", file=sys.stderr)
        return workload.shutdown(stop_reason="error", error=str(e))
    print(f"{app}: worker {config.worker_name} (pid {os.getpid()}) running for {config.duration:g} s; "
          f"metrics on port(s) {', '.join(map(str, ports)) or 'none'}", file=sys.stderr, flush=True)
    gate_timeout = config.start_gate_timeout if config.start_gate_timeout is not None else config.duration
    if config.start_gate is not None and not wait_for_gate(config.start_gate, gate_timeout):
        return workload.shutdown(stop_reason="error", error=f"start gate {config.start_gate} never appeared")
    recorder.event("gate", open_ns=time.monotonic_ns())
    reason = workload.run()
    status = workload.shutdown(stop_reason=reason)
    if config.linger > 0 and reason == "duration":
        Reactor().run(config.linger)  # nothing scheduled: metrics keep being served, a signal ends it
    return status
