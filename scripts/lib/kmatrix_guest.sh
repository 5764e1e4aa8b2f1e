#!/bin/bash
# What scripts/kernel_matrix.sh runs on each kernel: inside a qemu guest as its init (PID 1, the root filesystem of
# the matrix), or natively for the control kernel when this machine's kernel is not available as a file. Prints its
# findings as `KMATRIX key value...` lines, which the host side reads from the console; everything else it prints is
# the log.
#   kmatrix_guest.sh --guest   as PID 1 in the guest: mounts, runs, powers off
#   kmatrix_guest.sh --native  here, on this machine's kernel (a PostgreSQL of its own, torn down at the end)
# Settings (environment, or for the guest /kmatrix/env): KMATRIX_BINARY (the synapse-profiler binary),
# KMATRIX_TESTS (the integration test binary), KMATRIX_FILTER (its --gtest_filter), KMATRIX_TEST_TIMEOUT (seconds).
set -uo pipefail

mode=${1:-}
say() { echo "KMATRIX $*"; }

if [[ $mode == --guest ]]; then
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  exec </dev/console >/dev/console 2>&1
  # /proc, /sys and /dev were moved here by the initramfs.
  mountpoint -q /proc || mount -t proc proc /proc
  mountpoint -q /sys || mount -t sysfs sysfs /sys
  mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
  mount -o remount,rw /
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts
  mount -t tmpfs tmpfs /dev/shm
  mount -t tmpfs tmpfs /run
  # /tmp stays on the root file system, as on Debian 12 (the tests create O_DIRECT files there, which tmpfs refuses
  # before 6.6).
  mount -t tracefs tracefs /sys/kernel/tracing
  mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
  mount -t bpf bpf /sys/fs/bpf
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  hostname kmatrix
  ip link set lo up
  # shellcheck disable=SC1091
  source /kmatrix/env
  poweroff() { sync; echo o >/proc/sysrq-trigger; sleep 30; }
  trap poweroff EXIT
elif [[ $mode != --native ]]; then
  sed -n '2,9{s/^# \{0,1\}//p}' "$0" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say kernel "$(uname -r)"
say boot_seconds "$(cut -d' ' -f1 /proc/uptime)"
say time_scale "${SP_TEST_TIME_SCALE:-1}"
start=$(date +%s)

# --- doctor: every family attached, or off with its reason. Its report, with a `doctor` prefix the host keeps.
doctor_status=0
doctor_report=$("$KMATRIX_BINARY" doctor 2>&1) || doctor_status=$?
while IFS= read -r line; do say doctor "$line"; done <<<"$doctor_report"
say doctor_status "$doctor_status"

# --- the smoke: selected integration tests against a PostgreSQL of this run. sp_pg_start/sp_pg_stop are the
# suite's own (scripts/lib/common.sh, copied beside this script in the guest).
# shellcheck disable=SC1091
source "$here/common.sh"
pgdir=$(mktemp -d /tmp/kmatrix-pg.XXXXXX)
chmod 0755 "$pgdir"
if ! sp_pg_start "$pgdir/pg" >/dev/null; then
  say error "PostgreSQL did not start"
  exit 1
fi
json=$(mktemp /tmp/kmatrix-tests.XXXXXX.json)
rm -f "$json"
test_status=0
SYNAPSE_PROFILER_REQUIRE_BPF=1 timeout "${KMATRIX_TEST_TIMEOUT:-3600}" "$KMATRIX_TESTS" \
  --gtest_filter="$KMATRIX_FILTER" --gtest_output="json:$json" --gtest_color=no || test_status=$?
sp_pg_stop "$pgdir/pg"
rm -rf "$pgdir"
say tests_status "$test_status"
if [[ -s $json ]]; then
  # One line per test: name, result, seconds; then what each test recorded of its counts (RecordProperty).
  python3.11 - "$json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for suite in doc.get("testsuites", []):
    for t in suite.get("testsuite", []):
        name = f"{suite['name']}.{t['name']}"
        ok = "skipped" if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN" else (
            "FAILED" if t.get("failures") else "passed")
        print(f"KMATRIX test {name} {ok} {t.get('time', '?')}")
        # What the test compared, agent against the workload's truth (sp::test::record_compared).
        standard = {"name", "file", "line", "status", "result", "timestamp", "time", "classname", "failures",
                    "value_param", "type_param"}
        for key, value in t.items():
            if key not in standard:
                print(f"KMATRIX compared {name} {key} {value}")
        for f in t.get("failures", [])[:3]:
            first = f.get("failure", "").strip().splitlines()[:4]
            print(f"KMATRIX failure {name} {' | '.join(first)}")
EOF
fi
# Nothing of ours left in the kernel once every agent has gone.
left=$(bpftool -j prog show 2>/dev/null | python3.11 -c '
import json, re, sys
names = [p.get("name", "") for p in json.load(sys.stdin)]
print(sum(1 for n in names if re.match(r"(gc_|pq_|pgs_|io_start|rq_|nvme_|rt_)", n)))')
say bpf_programs_left "${left:-?}"
say run_seconds "$(($(date +%s) - start))"
say "done"
