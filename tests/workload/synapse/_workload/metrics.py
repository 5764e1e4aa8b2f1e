"""Synapse's Prometheus metrics (same names, types, labels and buckets) and its metrics listeners.

Everything is registered in prometheus_client's default REGISTRY, as in Synapse, so the default process_*,
python_info and python_gc_* collectors are exposed too.
"""

import gc
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Iterable, List, Type
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from synapse._workload.config import Listener

# Synapse's synapse/metrics/_gc.py: a Gauge despite the _total suffix, set to the last collection's result.
gc_unreachable = Gauge("python_gc_unreachable_total", "Unreachable GC objects", ["gen"])
gc_time = Histogram("python_gc_time", "Time taken to GC (sec)", ["gen"],
                    buckets=[0.0025, 0.005, 0.01, 0.025, 0.05, 0.10, 0.25, 0.50, 1.00, 2.50, 5.00, 7.50, 15.00,
                             30.00, 45.00, 60.00])
# Synapse's series of a generation appear at its first collection (within a second of start for gen 0); here all
# three exist from the start, so a scraper's first sample precedes any collection, even behind --start-gate.
for _gen in ("0", "1", "2"):
    gc_time.labels(_gen)
tick_time = Histogram("python_twisted_reactor_tick_time", "Tick time of the Twisted reactor (sec)",
                      buckets=[0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5])

# Synapse's synapse/storage/database.py. The two Counters are exposed as ..._count_total and ..._sum_total.
sql_scheduling_timer = Histogram("synapse_storage_schedule_time", "sec")
sql_query_timer = Histogram("synapse_storage_query_time", "sec", ["verb"])
sql_txn_count = Counter("synapse_storage_transaction_time_count", "sec", ["desc"])
sql_txn_duration = Counter("synapse_storage_transaction_time_sum", "sec", ["desc"])

# Synapse's synapse/http/request_metrics.py.
response_timer = Histogram("synapse_http_server_response_time_seconds", "sec", ["method", "servlet", "tag", "code"])


class _GCCounts:
    """python_gc_counts{gen}: gc.get_count() at scrape time."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("python_gc_counts", "GC object counts", labels=["gen"])
        for gen, count in enumerate(gc.get_count()):
            family.add_metric([str(gen)], count)
        yield family


REGISTRY.register(_GCCounts())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


class _IPv4Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 50
    address_family = socket.AF_INET


class _IPv6Server(_IPv4Server):
    address_family = socket.AF_INET6


def start_listeners(listeners: Iterable[Listener]) -> List[int]:
    """Serve the metrics on every listener address (any path works); return each listener's first bound port.

    Like Synapse, a listener only fails when none of its addresses can be bound: with the default addresses
    ``::`` and ``0.0.0.0``, the dual-stack ``::`` socket already covers IPv4 and binding ``0.0.0.0`` fails quietly.
    Raises OSError."""
    app = make_wsgi_app(REGISTRY)
    ports: List[int] = []
    for listener in listeners:
        bound: List[WSGIServer] = []
        failures: List[str] = []
        for address in listener.bind_addresses:
            server_class: Type[WSGIServer] = _IPv6Server if ":" in address else _IPv4Server
            try:
                server = make_server(address, listener.port, app, server_class, _QuietHandler)
            except OSError as e:
                failures.append(f"cannot listen on {address}:{listener.port}: {e.strerror or e}")
                continue
            bound.append(server)
            threading.Thread(target=server.serve_forever, name=f"metrics-{address}:{server.server_port}",
                             daemon=True).start()
        if not bound:
            raise OSError("; ".join(failures))
        dual_stack = any(s.address_family == socket.AF_INET6 and s.server_address[0] == "::" for s in bound)
        if failures and not dual_stack:
            print("warning: " + "; ".join(failures), file=sys.stderr)
        ports.append(bound[0].server_port)
    return ports
