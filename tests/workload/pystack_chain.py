"""Workload of tests/integration/pystack_it_test.cpp: calls libc's getppid() (os.getppid) from known chains of
Python functions while the test's uprobe captures the thread's Python stack, and writes each chain as the interpreter
itself sees it at that moment (innermost first: qualified name (name before 3.11), file, line) to the truth file:
    capture<TAB>function<TAB>file<TAB>line
Capture 0: a worker thread, outer() -> Service.middle() -> inner(). Capture 1: the main thread, deep() recursing 200
times (more than the walk's 128 frames). Usage: pystack_chain.py GATE DONE TRUTH; prints "ready", waits for the file
GATE, captures, writes TRUTH, waits for the file DONE (the test symbolizes while the process lives), exits."""
import os
import sys
import threading
import time

GATE, DONE, TRUTH = sys.argv[1:4]
chains = []


def describe(frame):
    out = []
    while frame is not None:
        code = frame.f_code
        out.append((getattr(code, "co_qualname", code.co_name), code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return out


# Each capture line records the frames and calls getppid() on the same line, so every frame's line is the one the
# probe sees.
def inner():
    chains.append(describe(sys._getframe())); os.getppid()  # noqa: E702


class Service:
    def middle(self):
        inner()


def outer():
    Service().middle()


def deep(n):
    if n == 0:
        chains.append(describe(sys._getframe())); os.getppid()  # noqa: E702
        return
    deep(n - 1)


def wait_file(path):
    while not os.path.exists(path):
        time.sleep(0.005)


print("ready", flush=True)
wait_file(GATE)
t = threading.Thread(target=outer)
t.start()
t.join()
deep(200)
with open(TRUTH + ".tmp", "w") as f:
    for i, chain in enumerate(chains):
        for name, filename, line in chain:
            f.write(f"{i}\t{name}\t{filename}\t{line}\n")
os.rename(TRUTH + ".tmp", TRUTH)
wait_file(DONE)
