"""A stand-in for psycopg2 on interpreters that have none (pyenv builds here; PyPI is not reachable): the subset of
its API the workload uses, on libpq through ctypes. Put this directory's parent first on PYTHONPATH.

What matters for the profiler is kept as psycopg2 does it: each statement is one PQexec() on a connection owned by
the calling thread, with the GIL released during the call (ctypes releases it), parameters interpolated
client-side (PQescapeLiteral), and BEGIN sent by itself before a transaction's first statement unless autocommit.
Values come back as text. Not a driver for anything else.
"""

import ctypes
import ctypes.util
from typing import Any, List, Optional, Sequence, Tuple

from psycopg2 import extensions

__version__ = "0-ctypes-shim"

_lib = ctypes.CDLL(ctypes.util.find_library("pq") or "libpq.so.5")
_P = ctypes.c_void_p
for _name, _res, _args in (
        ("PQconnectdb", _P, [ctypes.c_char_p]),
        ("PQstatus", ctypes.c_int, [_P]),
        ("PQerrorMessage", ctypes.c_char_p, [_P]),
        ("PQfinish", None, [_P]),
        ("PQexec", _P, [_P, ctypes.c_char_p]),
        ("PQresultStatus", ctypes.c_int, [_P]),
        ("PQresultErrorMessage", ctypes.c_char_p, [_P]),
        ("PQntuples", ctypes.c_int, [_P]),
        ("PQnfields", ctypes.c_int, [_P]),
        ("PQgetvalue", ctypes.c_char_p, [_P, ctypes.c_int, ctypes.c_int]),
        ("PQgetisnull", ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int]),
        ("PQclear", None, [_P]),
        ("PQtransactionStatus", ctypes.c_int, [_P]),
        ("PQescapeLiteral", _P, [_P, ctypes.c_char_p, ctypes.c_size_t]),
        ("PQfreemem", None, [_P])):
    _fn = getattr(_lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args

_PGRES_COMMAND_OK, _PGRES_TUPLES_OK = 1, 2


class Error(Exception):
    pass


class _Info:
    def __init__(self, conn: "connection"):
        self._conn = conn

    @property
    def transaction_status(self) -> int:
        return _lib.PQtransactionStatus(self._conn._pg)


def _conninfo(kwargs: dict) -> bytes:
    parts = []
    for key, value in kwargs.items():
        if key == "database":
            key = "dbname"
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        parts.append(f"{key}='{text}'")
    return " ".join(parts).encode()


class cursor:
    def __init__(self, conn: "connection"):
        self._conn = conn
        self._rows: List[Tuple[Optional[str], ...]] = []
        self.query: Optional[bytes] = None
        self.closed = False

    def _literal(self, value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        raw = str(value).encode()
        p = _lib.PQescapeLiteral(self._conn._pg, raw, len(raw))
        if not p:
            raise Error(_lib.PQerrorMessage(self._conn._pg).decode(errors="replace"))
        try:
            return ctypes.string_at(p).decode()
        finally:
            _lib.PQfreemem(p)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        text = sql % tuple(self._literal(a) for a in args) if args else sql
        if not self._conn.autocommit and self._conn.info.transaction_status == extensions.TRANSACTION_STATUS_IDLE:
            self._conn._run(b"BEGIN")
        self.query = text.encode()
        self._rows = self._conn._run(self.query)

    def fetchone(self) -> Optional[Tuple[Optional[str], ...]]:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> List[Tuple[Optional[str], ...]]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        self.closed = True


class connection:
    def __init__(self, dsn: bytes):
        self._pg = _lib.PQconnectdb(dsn)
        if not self._pg or _lib.PQstatus(self._pg) != 0:
            message = _lib.PQerrorMessage(self._pg).decode(errors="replace") if self._pg else "out of memory"
            if self._pg:
                _lib.PQfinish(self._pg)
            self._pg = None
            raise Error(message)
        self.autocommit = False
        self.info = _Info(self)

    @property
    def closed(self) -> int:
        return 0 if self._pg else 1

    def _run(self, sql: bytes) -> List[Tuple[Optional[str], ...]]:
        res = _lib.PQexec(self._pg, sql)
        try:
            status = _lib.PQresultStatus(res) if res else -1
            if status not in (_PGRES_COMMAND_OK, _PGRES_TUPLES_OK):
                message = (_lib.PQresultErrorMessage(res) if res else _lib.PQerrorMessage(self._pg)) or b""
                raise Error(message.decode(errors="replace"))
            rows = []
            for r in range(_lib.PQntuples(res)):
                rows.append(tuple(None if _lib.PQgetisnull(res, r, c) else _lib.PQgetvalue(res, r, c).decode()
                                  for c in range(_lib.PQnfields(res))))
            return rows
        finally:
            if res:
                _lib.PQclear(res)

    def cursor(self) -> cursor:
        return cursor(self)

    def commit(self) -> None:
        if self.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
            self._run(b"COMMIT")

    def rollback(self) -> None:
        if self.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
            self._run(b"ROLLBACK")

    def close(self) -> None:
        if self._pg:
            _lib.PQfinish(self._pg)
            self._pg = None


def connect(**kwargs: Any) -> connection:
    return connection(_conninfo(kwargs))
