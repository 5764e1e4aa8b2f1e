"""Workloads of the per-event cost benchmark (scripts/bench_probes.sh); run with Debian's /usr/bin/python3.11.

Each one prepares itself, writes READY_FILE, waits for GATE_FILE (the script attaches the probes in between), then
runs its tight loop of N events timed with its own clocks and prints one line of ground truth:
    events=N ns=ELAPSED_WALL_NS cpu_ns=PROCESS_CPU_NS
(process CPU time, user + system, includes the kernel's work in the process's context: the traps, the BPF programs
of uprobes and USDT probes, the block layer's submission path; it is not inflated by other processes on the CPUs)
  gc N GATE READY                       gc.collect(0) N times (automatic collection off)
  pq N GATE READY HOST PORT USER DB     psycopg2 (autocommit) cursor.execute("SELECT 1") + fetchone, N times
  dio read|write N GATE READY FILE      N O_DIRECT 4 KiB preads/pwrites, one request each, over FILE (>= 4 MiB)
  sys N GATE READY                      os.getppid() N times: a syscall that is not epoll's, on the main thread
  epoll N GATE READY                    select.epoll().poll(0) N times on the main thread, as a reactor that never
                                        waits: each call is one tick and one wait for the reactor family
"""
import gc
import mmap
import os
import select
import sys
import time

BLOCK = 4096


def wait_gate(gate, ready):
    with open(ready, "w") as f:
        f.write("ready\n")
    deadline = time.monotonic() + 120
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            sys.exit("gate never opened: " + gate)
        time.sleep(0.005)


def run_gc(n, gate, ready):
    gc.disable()
    gc.collect()
    wait_gate(gate, ready)
    collect = gc.collect
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(n):
        collect(0)
    return time.perf_counter_ns() - t0, time.process_time_ns() - c0


def run_pq(n, gate, ready, host, port, user, db):
    import psycopg2

    conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=db)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchone()
    wait_gate(gate, ready)
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(n):
        cur.execute("SELECT 1")
        cur.fetchone()
    elapsed = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    conn.close()
    return elapsed


def run_dio(op, n, gate, ready, path):
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        blocks = os.fstat(fd).st_size // BLOCK
        if blocks < 1024:
            sys.exit(f"{path}: needs at least 4 MiB")
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT requires
        buf.write(b"\xa5" * BLOCK)
        wait_gate(gate, ready)
        # A stride that is not a multiple of the block count's factors of two: no two consecutive requests are
        # adjacent, so none can be merged, and each call is exactly one request to the device.
        stride = 97
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        if op == "read":
            for i in range(n):
                os.preadv(fd, [buf], ((i * stride) % blocks) * BLOCK)
        else:
            for i in range(n):
                os.pwritev(fd, [buf], ((i * stride) % blocks) * BLOCK)
        return time.perf_counter_ns() - t0, time.process_time_ns() - c0
    finally:
        os.close(fd)


def run_sys(n, gate, ready):
    wait_gate(gate, ready)
    getppid = os.getppid
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(n):
        getppid()
    return time.perf_counter_ns() - t0, time.process_time_ns() - c0


def run_epoll(n, gate, ready):
    r, w = os.pipe()  # registered and never written: poll(0) returns at once with nothing
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    wait_gate(gate, ready)
    poll = ep.poll
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(n):
        poll(0)
    elapsed = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    ep.close()
    os.close(r)
    os.close(w)
    return elapsed


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    kind = argv[1]
    if kind == "gc":
        n = int(argv[2])
        elapsed = run_gc(n, argv[3], argv[4])
    elif kind == "pq":
        n = int(argv[2])
        elapsed = run_pq(n, *argv[3:9])
    elif kind in ("sys", "epoll"):
        n = int(argv[2])
        elapsed = (run_sys if kind == "sys" else run_epoll)(n, argv[3], argv[4])
    elif kind == "dio":
        n = int(argv[3])
        elapsed = run_dio(argv[2], n, argv[4], argv[5], argv[6])
    else:
        sys.exit(__doc__)
    print(f"events={n} ns={elapsed[0]} cpu_ns={elapsed[1]}", flush=True)


if __name__ == "__main__":
    main(sys.argv)
