"""Test stand-in for the Matrix homeserver Synapse (synapse-profiler's workload).

Only the process-level behaviour the profiler observes is imitated: module entry points, configuration,
Prometheus metrics, garbage collection, PostgreSQL access through psycopg2 and media-store file I/O.
"""
