"""The workload's tables and the Synapse-like transactions that use them.

The tables live in their own PostgreSQL schema (see config.WORKLOAD_SCHEMA, put first on the connections'
search_path), so the SQL names them without qualification, as Synapse does. Access tokens are secret-like literals
(``syt_s3cr3t_token_<n>``) that psycopg2 writes into the SQL text.
"""

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Tuple

from synapse._workload import metrics
from synapse._workload.config import WORKLOAD_SCHEMA
from synapse._workload.storage import DatabasePool, LoggingTransaction

_SCHEMA_LOCK_KEY = 0x5359_4E41  # serialises concurrent schema creation by several workload processes
_SCHEMA = (
    f"CREATE SCHEMA IF NOT EXISTS {WORKLOAD_SCHEMA}",
    "CREATE TABLE IF NOT EXISTS users (name TEXT NOT NULL, token TEXT NOT NULL, creation_ts BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS users_token ON users (token)",
    "CREATE TABLE IF NOT EXISTS events (stream_ordering BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL,"
    " room_id TEXT NOT NULL, sender TEXT NOT NULL, type TEXT NOT NULL, content TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_room ON events (room_id, stream_ordering)",
    "CREATE TABLE IF NOT EXISTS room_memberships (room_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " membership TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (room_id, user_id))",
)
_ROOMS = 8
_EVENTS_KEPT_PER_ROOM = 200


def _create_schema_txn(txn: LoggingTransaction) -> None:
    txn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
    for statement in _SCHEMA:
        txn.execute(statement)


def _register_user_txn(txn: LoggingTransaction, user_id: str, token: str, room_id: str) -> None:
    txn.execute("INSERT INTO users (name, token, creation_ts) VALUES (%s, %s, %s)",
                (user_id, token, int(time.time() * 1000)))
    txn.execute("INSERT INTO room_memberships (room_id, user_id, membership, event_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (room_id, user_id) DO UPDATE SET membership = EXCLUDED.membership",
                (room_id, user_id, "join", f"$join_{user_id}"))


def _get_user_by_access_token_txn(txn: LoggingTransaction, token: str) -> Optional[Tuple[Any, ...]]:
    txn.execute("SELECT name, creation_ts FROM users WHERE token = %s", (token,))
    return txn.fetchone()


def _persist_events_txn(txn: LoggingTransaction, event_id: str, room_id: str, sender: str, body: str) -> None:
    txn.execute("INSERT INTO events (event_id, room_id, sender, type, content) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING stream_ordering", (event_id, room_id, sender, "m.room.message", body))
    txn.fetchone()
    txn.execute("UPDATE room_memberships SET event_id = %s WHERE room_id = %s AND user_id = %s",
                (event_id, room_id, sender))


def _get_users_in_room_txn(txn: LoggingTransaction, room_id: str) -> list:
    txn.execute("SELECT user_id FROM room_memberships WHERE room_id = %s AND membership = %s", (room_id, "join"))
    return txn.fetchall()


def _purge_history_txn(txn: LoggingTransaction, room_id: str, keep: int) -> None:
    txn.execute("DELETE FROM events WHERE room_id = %s AND stream_ordering <"
                " (SELECT max(stream_ordering) - %s FROM events WHERE room_id = %s)", (room_id, keep, room_id))


def _hold_connection_txn(txn: LoggingTransaction, seconds: float, started: threading.Event) -> None:
    started.set()
    txn.execute("SELECT pg_sleep(%s)", (seconds,))


@dataclass(frozen=True)
class _Servlet:
    """What Synapse would label the HTTP request that caused a transaction."""
    method: str
    name: str


@dataclass(frozen=True)
class _Request:
    desc: Optional[str]  # None: statements sent outside any transaction
    servlet: Optional[_Servlet]  # None: a background job, no HTTP request
    func: Callable[..., Any]
    args: Tuple[Any, ...]


def _slow_query_txn(txn: LoggingTransaction, seconds: float) -> None:
    txn.execute("SELECT pg_sleep(%s)", (seconds,))


def _scan_table_txn(txn: LoggingTransaction, table: str) -> None:
    # The table name comes from the workload's own command line (a test's table), never from outside.
    txn.execute(f"SELECT count(*) FROM {table}")


def _bare_select_txn(txn: LoggingTransaction, n: int) -> None:
    # Like Synapse's connection set-up statements: sent by a pool thread, but not from inside new_transaction.
    txn.execute("SELECT %s AS bare", (n,))


def _requests(slow_query: float, scan_table: Optional[str], bare_queries: int = 0) -> Iterator[_Request]:
    """An endless, deterministic mix of requests touching users, events and room_memberships."""
    for n in itertools.count():
        for _ in range(bare_queries):
            yield _Request(None, None, _bare_select_txn, (n,))
        if scan_table:
            yield _Request("scan_table", None, _scan_table_txn, (scan_table,))
        if slow_query > 0:
            yield _Request("slow_query", None, _slow_query_txn, (slow_query,))
        user, room = f"@user{n}:workload.test", f"!room{n % _ROOMS}:workload.test"
        known = f"syt_s3cr3t_token_{max(0, n - 5)}"
        yield _Request("register_user", _Servlet("POST", "RegisterRestServlet"), _register_user_txn,
                       (user, f"syt_s3cr3t_token_{n}", room))
        yield _Request("get_user_by_access_token", _Servlet("GET", "WhoamiRestServlet"),
                       _get_user_by_access_token_txn, (known,))
        yield _Request("persist_events", _Servlet("PUT", "RoomSendEventRestServlet"), _persist_events_txn,
                       (f"$event{n}:workload.test", room, user, f"message {n}"))
        yield _Request("get_users_in_room", _Servlet("GET", "RoomMemberListRestServlet"), _get_users_in_room_txn,
                       (room,))
        yield _Request("purge_history", None, _purge_history_txn, (room, _EVENTS_KEPT_PER_ROOM))


class DataStore:
    """Issues the workload's transactions on a DatabasePool."""

    def __init__(self, pool: DatabasePool, slow_query: float = 0.0, scan_table: Optional[str] = None,
                 bare_queries: int = 0):
        self._pool = pool
        self._requests = _requests(slow_query, scan_table, bare_queries)

    def create_schema(self) -> None:
        """CREATE ... IF NOT EXISTS on the calling thread (the main thread, before the pool starts)."""
        self._pool.run_on_this_thread("create_schema", _create_schema_txn)

    def handle_request(self) -> None:
        """Queue the next transaction of the mix; an HTTP-like request is timed from now until it completes."""
        request = next(self._requests)
        received_ns = time.monotonic_ns()

        def done(error: Optional[BaseException]) -> None:
            servlet = request.servlet
            if servlet is not None:
                metrics.response_timer.labels(servlet.method, servlet.name, "", "500" if error else "200").observe(
                    (time.monotonic_ns() - received_ns) / 1e9)

        self._pool.run_interaction(request.desc, request.func, *request.args, done=done)

    def hold_connection(self, seconds: float) -> threading.Event:
        """Queue ``SELECT pg_sleep(seconds)``; the returned event is set just before the statement is sent."""
        started = threading.Event()
        self._pool.run_interaction("hold_connection", _hold_connection_txn, seconds, started)
        return started
