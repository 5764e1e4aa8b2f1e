#!/usr/bin/env python3
"""The tables of scripts/kernel_matrix.sh, in Markdown, from the `KMATRIX ...` lines of each kernel's run
(RESULTS_DIR/SERIES.results). Exit status 0 when every kernel passed, 1 otherwise (the tables are printed anyway).

    kmatrix_table.py RESULTS_DIR SERIES...
"""
import re
import sys
from collections import OrderedDict


def read(path):
    r = {"doctor": [], "tests": OrderedDict(), "compared": OrderedDict(), "failures": [], "errors": []}
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        r["errors"].append(f"no results: {e.strerror}")
        return r
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != "KMATRIX":
            continue
        key, rest = parts[1], parts[2] if len(parts) > 2 else ""
        if key == "doctor":
            r["doctor"].append(rest)
        elif key == "test":
            name, result, seconds = (rest.split(" ") + ["", ""])[:3]
            r["tests"][name] = (result, seconds)
        elif key == "compared":
            test, what, value = (rest.split(" ", 2) + ["", ""])[:3]
            r["compared"][(test, what)] = value
        elif key == "failure":
            r["failures"].append(rest)
        elif key == "error":
            r["errors"].append(rest)
        else:
            r[key] = rest
    return r


def cell(s):
    return s.replace("|", "\\|")


def seconds(s):
    try:
        return f"{float(s):.0f}"
    except (TypeError, ValueError):
        return "?"


# The doctor lines worth a row: BPF hooks and families; attach methods from its log lines.
CHECK = re.compile(r"^\[(ok  |warn|FAIL)\] ((BPF hook|probe family|kernel BTF) .*?)(?:: (.*))?$")
ATTACHED = re.compile(r"^\S+ info: (block I/O|reactor): (.*)$")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    results_dir, series = sys.argv[1], sys.argv[2:]
    runs = OrderedDict((s, read(f"{results_dir}/{s}.results")) for s in series)
    verdicts = {}
    for s, r in runs.items():
        why = list(r["errors"])
        if "done" not in r:
            why.append("the run did not finish")
        if r.get("doctor_status") not in ("0", "1"):
            why.append(f"doctor status {r.get('doctor_status', '?')}")
        if r.get("tests_status") != "0":
            why.append(f"smoke status {r.get('tests_status', '?')}")
        if not r["tests"]:
            why.append("no test ran")
        why += [f"{n} {res}" for n, (res, _) in r["tests"].items() if res != "passed"]
        if r.get("bpf_programs_left") not in ("0", None) and s != "control":
            why.append(f"{r.get('bpf_programs_left')} BPF programs left")
        verdicts[s] = why

    out = []
    out.append("| kernel | booted as | boot (s) | run (s) | test timeouts x | doctor | smoke | BPF programs left | verdict |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s, r in runs.items():
        how = "native (control)" if s == "control" else "qemu TCG"
        passed = sum(1 for res, _ in r["tests"].values() if res == "passed")
        doctor = {"0": "all needed checks pass", "1": "a needed check failed"}.get(r.get("doctor_status"), "?")
        left = r.get("bpf_programs_left", "?") if s != "control" else "(host shared; DetachIT)"
        verdict = "pass" if not verdicts[s] else "FAIL: " + "; ".join(verdicts[s])
        boot = "-" if s == "control" else seconds(r.get("boot_seconds"))  # natively: the host's uptime
        out.append(f"| {cell(r.get('kernel', s))} | {how} | {boot} | "
                   f"{seconds(r.get('run_seconds'))} | {cell(r.get('time_scale', '?'))} | {doctor} | {passed}/{len(r['tests'])} tests | {left} | "
                   f"{cell(verdict)} |")

    # doctor: one row per check, one column per kernel.
    checks = OrderedDict()
    for s, r in runs.items():
        for line in r["doctor"]:
            m = CHECK.match(line)
            if m:
                state, what, why = m.group(1).strip(), m.group(2), m.group(4)
                checks.setdefault(what, {})[s] = state + (f": {why}" if why and state != "ok" else "")
                continue
            m = ATTACHED.match(line)
            if m:
                checks.setdefault(f"{m.group(1)} attached by", {})[s] = m.group(2)
    out.append("")
    out.append("| doctor | " + " | ".join(cell(runs[s].get("kernel", s)) for s in series) + " |")
    out.append("| --- |" + " --- |" * len(series))
    for what, by in checks.items():
        out.append(f"| {cell(what)} | " + " | ".join(cell(by.get(s, "-")) for s in series) + " |")

    # the smoke: one row per test, one column per kernel.
    tests = OrderedDict()
    for s, r in runs.items():
        for n, (res, secs) in r["tests"].items():
            tests.setdefault(n, {})[s] = f"{res} ({seconds(secs.rstrip('s'))} s)"
    out.append("")
    out.append("| smoke test | " + " | ".join(cell(runs[s].get("kernel", s)) for s in series) + " |")
    out.append("| --- |" + " --- |" * len(series))
    for n, by in tests.items():
        out.append(f"| {cell(n)} | " + " | ".join(cell(by.get(s, "-")) for s in series) + " |")
    # what the smoke compared: the agent's count of the workload's own (equal, or within the test's stated bound).
    compared = OrderedDict()
    for s, r in runs.items():
        for (test, what), value in r["compared"].items():
            compared.setdefault((test.split(".", 1)[0], what), {})[s] = value
    if compared:
        out.append("")
        out.append("| counted (agent of truth) | " + " | ".join(cell(runs[s].get("kernel", s)) for s in series) + " |")
        out.append("| --- |" + " --- |" * len(series))
        for (suite, what), by in compared.items():
            out.append(f"| {cell(suite)}: {cell(what)} | " + " | ".join(cell(by.get(s, "-")) for s in series) + " |")
    failures = [(s, f) for s, r in runs.items() for f in r["failures"]]
    if failures:
        out.append("")
        out.append("Failures:")
        out.append("")
        for s, f in failures:
            out.append(f"- {runs[s].get('kernel', s)}: `{f[:300]}`")
    print("\n".join(out))
    return 0 if not any(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
