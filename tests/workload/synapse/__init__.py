"""Test stand-in for the Matrix homeserver Synapse (synapse-profiler's workload).

Only the process-level behaviour the profiler observes is imitated: module entry points, configuration,
Prometheus metrics, garbage collection, PostgreSQL access through psycopg2 and media-store file I/O.
"""

import gc

# Automatic collections off from the first import of the package, as main() keeps them: the imports that follow
# would otherwise collect dozens of times, pauses a profiler attached early counts and the workload's record does not
# hold. (The interpreter's own start-up, before this import, can still collect a few times.)
gc.disable()
