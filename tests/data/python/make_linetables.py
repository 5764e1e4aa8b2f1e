# Writes one line per code object for tests/unit/python/py_symbolizer_test.cpp: the interpreter's minor version,
# co_firstlineno, co_linetable as hex, then "byte_offset:line" for every instruction, lines as the interpreter
# itself computes them (co_lines(); -1 where an instruction has no line). Run with each CPython 3.10-3.13:
#   python3.X make_linetables.py >> linetables.txt
import sys


def sample(a, b=2):
    total = 0
    for i in range(a):
        if i % b:
            total += i

        else:
            total -= 1
    try:
        total //= a - a
    except ZeroDivisionError:
        total = -total
    return [x * 2 for x in range(total % 7)]


class Holder:
    def method(self, value):
        return (value
                + 1)


def far_away():
    x = 1
    # a long gap, so that the line delta does not fit in the short forms
    y = 2; z = 3  # noqa: E702
    return x + y + z


far_away.__code__ = far_away.__code__.replace(co_firstlineno=far_away.__code__.co_firstlineno)

for code in (sample.__code__, Holder.method.__code__, far_away.__code__, compile("a = 1\n\n\nb = a\n", "m", "exec")):
    lines = {}
    for start, end, line in code.co_lines():
        for off in range(start, end, 2):
            lines[off] = -1 if line is None else line
    pairs = " ".join(f"{o}:{l}" for o, l in sorted(lines.items()))
    print(sys.version_info.minor, code.co_firstlineno, code.co_linetable.hex(), pairs)
