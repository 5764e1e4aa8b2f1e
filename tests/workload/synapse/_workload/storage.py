"""PostgreSQL access shaped like Synapse's synapse/storage/database.py.

A pool of threads, each owning one psycopg2 connection (autocommit off), runs interactions queued by the main
thread. Every interaction runs inside ``DatabasePool.new_transaction(self, conn, desc, func, *args)`` — the same
name, and a local ``desc``, as in Synapse — which hands ``func`` a ``LoggingTransaction`` whose ``execute`` is timed
into ``synapse_storage_query_time{verb}``. psycopg2 interpolates parameters client-side, so the SQL that reaches
libpq (``cursor.query``) carries literal values; it sends BEGIN itself before the first statement of a transaction.
"""

import itertools
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import psycopg2
import psycopg2.extensions

from synapse._workload import metrics
from synapse._workload.truth import Recorder

Done = Callable[[Optional[BaseException]], None]


def _describe(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def describe_target(db_args: Dict[str, Any]) -> str:
    """host:port/dbname for error messages (never the password)."""
    host = db_args.get("host") or "(default socket)"
    return f"{host}:{db_args.get('port', 5432)}/{db_args.get('dbname') or db_args.get('database') or ''}"


class LoggingTransaction:
    """Cursor wrapper: times each statement (and the commit), updates the metrics and records the ground truth."""

    def __init__(self, conn: "psycopg2.extensions.connection", desc: Optional[str], txn_id: int, recorder: Recorder,
                 query_sleep: float):
        self._conn = conn
        self._cursor = conn.cursor()
        self._desc = desc
        self._txn_id = txn_id
        self._recorder = recorder
        self._query_sleep = query_sleep
        self.statements = 0

    def _record(self, verb: str, sql: str, start_ns: int, exec_end_ns: int, end_ns: int, timed: bool, begin: bool,
                error: Optional[BaseException]) -> None:
        self.statements += 1
        self._recorder.query(verb=verb, start_ns=start_ns, end_ns=end_ns, exec_start_ns=start_ns,
                             exec_end_ns=exec_end_ns, error=None if error is None else _describe(error),
                             desc=self._desc, txn=self._txn_id, tid=threading.get_native_id(), sql=sql,
                             begin=begin, timed=timed, sleep_ns=end_ns - exec_end_ns)

    def execute(self, sql: str, args: Tuple[Any, ...] = ()) -> None:
        verb = sql.split()[0]
        # psycopg2 sends BEGIN inside this execute() when no transaction is open yet (never in autocommit mode).
        begin = (not self._conn.autocommit
                 and self._conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE)
        error: Optional[BaseException] = None
        start_ns = time.monotonic_ns()
        try:
            self._cursor.execute(sql, args)
        except psycopg2.Error as e:
            error = e
            raise
        finally:
            exec_end_ns = time.monotonic_ns()
            if error is None and self._query_sleep:
                time.sleep(self._query_sleep)  # stands in for Python overhead inside Synapse's timed region
            end_ns = time.monotonic_ns()
            metrics.sql_query_timer.labels(verb).observe((end_ns - start_ns) / 1e9)
            sent = self._cursor.query
            self._record(verb, sent.decode("utf-8", "replace") if sent is not None else sql, start_ns, exec_end_ns,
                         end_ns, True, begin, error)

    def fetchall(self) -> List[Tuple[Any, ...]]:
        return self._cursor.fetchall()

    def fetchone(self) -> Optional[Tuple[Any, ...]]:
        return self._cursor.fetchone()

    def _finish(self, verb: str, action: Callable[[], None]) -> None:
        """COMMIT / ROLLBACK: recorded (psycopg2 sends them with PQexec) but, as in Synapse, not in query_time."""
        if self._conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            action()  # nothing is sent to the server
            return
        error: Optional[BaseException] = None
        start_ns = time.monotonic_ns()
        try:
            action()
        except psycopg2.Error as e:
            error = e
            raise
        finally:
            end_ns = time.monotonic_ns()
            self._record(verb, verb, start_ns, end_ns, end_ns, False, False, error)

    def commit(self) -> None:
        self._finish("COMMIT", self._conn.commit)

    def rollback(self) -> None:
        if not self._conn.closed:
            self._finish("ROLLBACK", self._conn.rollback)

    def close(self) -> None:
        if not self._cursor.closed and not self._conn.closed:
            self._cursor.close()


@dataclass
class _Interaction:
    desc: Optional[str]  # None: run outside any transaction (run_outside_transaction)
    func: Callable[..., Any]
    args: Tuple[Any, ...]
    submitted_ns: int
    done: Optional[Done]


class DatabasePool:
    """N threads, each with its own connection, running queued interactions like Synapse's runInteraction()."""

    def __init__(self, db_args: Dict[str, Any], threads: int, recorder: Recorder, query_sleep: float):
        self._db_args = db_args
        self._size = threads
        self._recorder = recorder
        self._query_sleep = query_sleep
        self._queue: "queue.Queue[Optional[_Interaction]]" = queue.Queue()
        self._txn_ids = itertools.count(1)
        self._threads: List[threading.Thread] = []
        self._connections: List["psycopg2.extensions.connection"] = []
        self._failures_lock = threading.Lock()
        self.failures = 0  # interactions that raised, including failed reconnects

    def _connect(self) -> "psycopg2.extensions.connection":
        conn = psycopg2.connect(**self._db_args)
        conn.autocommit = False
        return conn

    def connect(self) -> None:
        """Open every connection now, so that an unreachable database fails the start (psycopg2.Error)."""
        self._connections = [self._connect() for _ in range(self._size)]

    def new_transaction(self, conn: "psycopg2.extensions.connection", desc: str, func: Callable[..., Any],
                        *args: Any) -> Any:
        """Run func(txn, *args) as one transaction on conn and commit it; roll back and re-raise on error."""
        txn_id = next(self._txn_ids)
        start_ns = time.monotonic_ns()
        txn = LoggingTransaction(conn, desc, txn_id, self._recorder, self._query_sleep)
        error: Optional[BaseException] = None
        try:
            result = func(txn, *args)
            txn.commit()
            return result
        except psycopg2.Error as e:
            error = e
            try:
                txn.rollback()
            except psycopg2.Error:
                pass  # the original error is the one worth reporting
            raise
        finally:
            txn.close()
            end_ns = time.monotonic_ns()
            metrics.sql_txn_count.labels(desc).inc()
            metrics.sql_txn_duration.labels(desc).inc((end_ns - start_ns) / 1e9)
            self._recorder.transaction(desc=desc, start_ns=start_ns, end_ns=end_ns,
                                       error=None if error is None else _describe(error), txn=txn_id,
                                       tid=threading.get_native_id(), statements=txn.statements)

    def run_outside_transaction(self, conn: "psycopg2.extensions.connection", func: Callable[..., Any],
                                *args: Any) -> Any:
        """Run func(txn, *args) in autocommit mode, with no new_transaction frame on the stack: its statements belong
        to no Synapse transaction (truth: desc null, txn 0)."""
        txn = LoggingTransaction(conn, None, 0, self._recorder, self._query_sleep)
        conn.autocommit = True
        try:
            return func(txn, *args)
        finally:
            txn.close()
            conn.autocommit = False

    def run_on_this_thread(self, desc: str, func: Callable[..., Any], *args: Any) -> Any:
        """Run one interaction on the calling thread (used for the schema, before the pool starts)."""
        return self.new_transaction(self._connections[0], desc, func, *args)

    def start(self) -> None:
        for index, conn in enumerate(self._connections):
            thread = threading.Thread(target=self._worker, args=(conn,), name=f"db-pool-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def run_interaction(self, desc: Optional[str], func: Callable[..., Any], *args: Any, done: Optional[Done] = None) -> None:
        """Queue func(txn, *args) for the next free connection; done(error or None) is called on that thread."""
        self._queue.put(_Interaction(desc, func, args, time.monotonic_ns(), done))

    def _worker(self, conn: "psycopg2.extensions.connection") -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            metrics.sql_scheduling_timer.observe((time.monotonic_ns() - job.submitted_ns) / 1e9)
            error: Optional[BaseException] = None
            try:
                if conn.closed:
                    conn = self._connect()
                if job.desc is None:
                    self.run_outside_transaction(conn, job.func, *job.args)
                else:
                    self.new_transaction(conn, job.desc, job.func, *job.args)
            except psycopg2.Error as e:
                error = e
                with self._failures_lock:
                    self.failures += 1
                print(f"error: transaction {job.desc} failed: {_describe(e)}", file=sys.stderr)
            if job.done is not None:
                job.done(error)
        conn.close()

    def stop(self, timeout: float) -> int:
        """Drop queued interactions, let running ones finish (up to timeout seconds); return how many were dropped."""
        dropped = 0
        while True:
            try:
                if self._queue.get_nowait() is not None:
                    dropped += 1
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not self._threads:
            for conn in self._connections:
                conn.close()
        return dropped
