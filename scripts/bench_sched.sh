#!/usr/bin/env bash
# Cost of the reactor family's scheduler hooks (issue 21): a pipe ping-pong on one CPU (every pass a wakeup and a
# context switch), nanoseconds per pass, side by side in one run:
#   none      nothing attached
#   floor     empty tp_btf programs on sched_switch, sched_wakeup, sched_wakeup_new (bpf/bench/probe_floor.bpf.c)
#   ours      the reactor family's BPF object (ReactorProbe, as the agent loads it), profiling nothing: what every
#             process on the host that is not a worker pays
# each for two processes (unprofiled tasks), and for two threads of one process that "ours" profiles (a worker's
# cost: every switch and wakeup accounted). Median of --repeat runs. The loader also has the kernel count its programs'
# own run time while attached (BPF_ENABLE_STATS): mean ns per program run, per hook, which a loaded machine blurs far
# less than the wall-clock ping-pong. bpftrace is not compared yet.
#
#   scripts/bench_sched.sh [--build DIR] [--rounds N] [--repeat N] [--cpu N]
set -euo pipefail
BUILD=${SP_BUILD_DIR:-build}
ROUNDS=200000
REPEAT=5
CPU=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --cpu) CPU=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
LOADER=$BUILD/sp_bench_probes
PINGPONG=$BUILD/sp_bench_pingpong
for b in "$LOADER" "$PINGPONG"; do
  [[ -x $b ]] || { echo "missing $b: cmake --build $BUILD --target sp_bench_probes sp_bench_pingpong" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/sp-bench-sched.XXXXXX)
LOADER_PID=
cleanup() {
  [[ -n $LOADER_PID ]] && kill "$LOADER_PID" 2>/dev/null && wait "$LOADER_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

start_loader() {  # MODE [PID]
  rm -f "$TMP/ready"
  local args=(attach sched "$1" --ready "$TMP/ready")
  [[ -n ${2:-} ]] && args+=(--pid "$2")
  "$LOADER" "${args[@]}" >"$TMP/loader.log" 2>&1 &
  LOADER_PID=$!
  for _ in $(seq 1 600); do
    [[ -s $TMP/ready ]] && return 0
    kill -0 "$LOADER_PID" 2>/dev/null || { cat "$TMP/loader.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "loader not ready" >&2; cat "$TMP/loader.log" >&2; exit 1
}

stop_loader() {
  kill "$LOADER_PID"; wait "$LOADER_PID" 2>/dev/null || true; LOADER_PID=
  cat "$TMP/loader.log" >>"$TMP/loaders.$KIND.log"
}

one_run() {  # MODE KIND -> ns per pass
  local mode=$1 kind=$2 extra=()
  KIND=$kind
  [[ $kind == threads ]] && extra+=(--threads)
  rm -f "$TMP/go" "$TMP/out"
  taskset -c "$CPU" "$PINGPONG" "$ROUNDS" "${extra[@]}" --go "$TMP/go" >"$TMP/out" &
  local pp=$!
  for _ in $(seq 1 200); do [[ -s $TMP/out ]] && break; sleep 0.01; done
  local target
  target=$(awk '/^pid/ {print $2}' "$TMP/out")
  case $mode in
    floor) start_loader floor ;;
    ours) if [[ $kind == threads ]]; then start_loader ours "$target"; else start_loader ours; fi ;;
  esac
  touch "$TMP/go"
  wait "$pp"
  [[ $mode != none ]] && stop_loader
  awk '/^ns_per_pass/ {print $2}' "$TMP/out"
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

echo "# scheduler hooks: pipe ping-pong on CPU $CPU, $ROUNDS round trips, median of $REPEAT runs (ns per pass)"
echo "# kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A result
for kind in processes threads; do
  for mode in none floor ours; do
    : >"$TMP/samples"
    for _ in $(seq 1 "$REPEAT"); do one_run "$mode" "$kind" >>"$TMP/samples"; done
    result[$kind.$mode]=$(median <"$TMP/samples")
    echo "$kind $mode: $(tr '\n' ' ' <"$TMP/samples")-> median ${result[$kind.$mode]}"
  done
done
for kind in processes threads; do
  awk -v k="$kind" -v n="${result[$kind.none]}" -v f="${result[$kind.floor]}" -v o="${result[$kind.ours]}" 'BEGIN {
    printf "%s: none %.1f ns, floor %.1f ns (+%.1f), ours %.1f ns (+%.1f): ours/floor added cost %.2fx\n",
      k, n, f, f - n, o, o - n, ((f - n) > 0 ? (o - n) / (f - n) : 0) }'
done
# Mean ns per program run over all runs with a loader (every task on the host, not just the ping-pong).
for who in floor ours; do
  for kind in processes threads; do
    grep -h "^$who: prog" "$TMP/loaders.$kind.log" 2>/dev/null | awk -v w="$who" -v k="$kind" '
      {runs[$3] += $5; ns[$3] += $5 * $7}
      END {for (p in runs) if (runs[p] > 0 && p !~ /_raw$/) printf "%s (%s): %s %d runs, %.1f ns per run\n", w, k, p, runs[p], ns[p] / runs[p]}'
  done
done
grep -h "^ours: thread entries" "$TMP/loaders.threads.log" | tail -1 || true
