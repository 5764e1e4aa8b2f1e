"""psycopg2.extensions as far as the workload uses it (see __init__.py)."""

TRANSACTION_STATUS_IDLE = 0  # PQTRANS_IDLE


def __getattr__(name: str):
    if name == "connection":
        from psycopg2 import connection
        return connection
    raise AttributeError(name)
