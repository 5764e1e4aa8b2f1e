#!/usr/bin/env bash
# `synapse-profiler record` over long recordings (issue 25): trace bytes per event and the agent's memory over time.
# Four Synapse-like workers (tests/workload, --query-rate 110 transactions/s each: about 2 000 libpq calls/s in all,
# each with its server-side statement, plus GC and a little disk I/O) are recorded for --seconds; the agent's VmRSS is
# sampled every 10 s. Prints: events written, trace bytes (and bytes per event), the uncompressed JSON size, VmRSS
# over time and its peak (VmHWM), and checks that the trace is complete (gzip stream intact, JSON parses).
#   sudo scripts/bench_record.sh [--seconds 600] [--binary PATH] [--smoke]
# --binary: another build's synapse-profiler (e.g. an older one writing trace.json) for a before/after comparison
#   on the same workload; whichever trace file it writes is measured.
# --smoke: 20 s (checks that the benchmark works; numbers meaningless).
# SP_BENCH_KEEP=1 keeps the working directory (trace, report, logs) for a look afterwards.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

seconds=600 binary= rate=110
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift ;;
    --binary) binary=$2; shift ;;
    --rate) rate=$2; shift ;;
    --smoke) seconds=20 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) -eq 0 ]] || { echo "needs root (BPF)" >&2; exit 1; }
for tool in ss gzip; do command -v "$tool" >/dev/null || { echo "$tool not found (run scripts/setup.sh)" >&2; exit 1; }; done
build=${SP_BUILD_DIR:-$SP_ROOT/build}
bin=${binary:-$build/synapse-profiler}
[[ -x $bin ]] || { echo "no $bin: build first" >&2; exit 1; }
python=/usr/bin/python3.11
workload_dir=$SP_ROOT/tests/workload

work=$(mktemp -d /tmp/sp-bench-record.XXXXXX)
chmod 0755 "$work"
worker_pids=() rec_pid=
cleanup() {
  set +e
  [[ -n $rec_pid ]] && kill "$rec_pid" 2>/dev/null
  for p in "${worker_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -d $work/pg ]] && sp_pg_stop "$work/pg"
  if [[ -n ${SP_BENCH_KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[[ -n ${SP_PG_PORT:-} ]] || sp_pg_start "$work/pg" >/dev/null

echo "== synapse-profiler record benchmark ($(nproc) CPUs, kernel $(uname -r), $(date -u +%FT%TZ)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)): $bin, $seconds s, 4 workers at --query-rate $rate"

ports=()
for i in 1 2 3 4; do
  p=$(sp_free_port $((30000 + RANDOM % 20000)) 60000)
  ports+=("$p")
  cat >"$work/rec-$i.yaml" <<YAML
worker_name: rec-$i
worker_app: synapse.app.generic_worker
enable_metrics: true
worker_listeners: [{type: metrics, port: $p, bind_addresses: ['127.0.0.1']}]
database: {name: psycopg2, args: {host: $SP_PG_SOCKET_DIR, port: $SP_PG_PORT, user: $SP_PG_USER, dbname: $SP_PG_DB}}
YAML
  (cd "$workload_dir" && exec "$python" -m synapse.app.generic_worker -c "$work/rec-$i.yaml" \
      --truth "$work/rec-$i.jsonl" --start-gate "$work/gate" --duration $((seconds + 600)) --query-rate "$rate" \
      --gc-schedule 0:1.5,1:0.3,2:0.05 --io-rate 1) >"$work/rec-$i.log" 2>&1 &
  worker_pids+=("$!")
  deadline=$((SECONDS + 60))
  until ss -Htln "sport = :$p" | grep -q .; do
    kill -0 "${worker_pids[-1]}" 2>/dev/null || { cat "$work/rec-$i.log" >&2; echo "worker rec-$i died" >&2; exit 1; }
    [[ $SECONDS -lt $deadline ]] || { echo "worker rec-$i did not start" >&2; exit 1; }
    sleep 0.1
  done
done

pinned=()
for p in "${worker_pids[@]}"; do pinned+=(--pid "$p"); done
"$bin" record --output "$work/out" --duration "${seconds}s" --rescan-interval 1s "${pinned[@]}" \
    >"$work/record.log" 2>&1 &
rec_pid=$!
deadline=$((SECONDS + 60))
until grep -q "recording for" "$work/record.log" 2>/dev/null; do
  kill -0 "$rec_pid" 2>/dev/null || { cat "$work/record.log" >&2; echo "record died" >&2; exit 1; }
  [[ $SECONDS -lt $deadline ]] || { echo "record did not start" >&2; exit 1; }
  sleep 0.1
done
touch "$work/gate"
t0=$SECONDS
rss=()
tick=0
while kill -0 "$rec_pid" 2>/dev/null; do
  sleep 1
  tick=$((tick + 1))
  [[ $((tick % 10)) -eq 0 ]] || continue
  # Sampled every 10 s while recording (the end's writing of the report is in VmHWM).
  kb=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$rec_pid/status" 2>/dev/null || true)
  [[ -n $kb ]] && rss+=("$((SECONDS - t0))s:$((kb / 1024))MB")
  hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$rec_pid/status" 2>/dev/null || echo "${hwm:-0}")
  cpu=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$rec_pid/stat" 2>/dev/null || echo "${cpu:-0}")
done
wait "$rec_pid" && status=0 || status=$?
rec_pid=
# The workers stop with the recording, so that their own count covers about its span.
elapsed=$((SECONDS - t0))
for p in "${worker_pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${worker_pids[@]}"; do wait "$p" 2>/dev/null || true; done
worker_pids=()
[[ $status -eq 0 ]] || { tail -n 20 "$work/record.log" >&2; echo "record exited with $status" >&2; exit 1; }

trace=$work/out/trace.json.gz
[[ -f $trace ]] || trace=$work/out/trace.json
bytes=$(stat -c %s "$trace")
# The event count from the trace's otherData (at its end now, at its start in older builds); the JSON is checked by
# Python's parser (streamed from the file: jq would hold a 10-minute trace's objects in memory).
if [[ $trace == *.gz ]]; then
  gzip -t "$trace" || { echo "the gzip stream is not intact" >&2; exit 1; }
  json_bytes=$(gzip -dc "$trace" | wc -c)
fi
read -r events json_check < <("$python" - "$trace" <<'PY'
import gzip, json, sys
path = sys.argv[1]
with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
    doc = json.load(f)
print(doc["otherData"]["events"], f"parsed:{len(doc['traceEvents'])}_trace_events")
PY
)
[[ $trace == *.gz ]] || json_bytes=$bytes
calls=$(cat "$work"/rec-*.jsonl | grep -c '"type": *"query"' || true)
echo "VmRSS while recording: ${rss[*]}"
echo "peak VmRSS (VmHWM, includes writing the report): $((hwm / 1024)) MB; CPU (utime+stime) while recording:" \
     "$(awk -v t="$cpu" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}') s; JSON check: $json_check"
echo "trace: $(basename "$trace") $bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MB)," \
     "$events events, $(awk -v b="$bytes" -v e="$events" 'BEGIN {printf "%.1f", b / e}') bytes per event;" \
     "uncompressed JSON $json_bytes bytes ($(awk -v b="$json_bytes" -v e="$events" 'BEGIN {printf "%.1f", b / e}') per event)"
echo "recorded: $(awk -v e="$events" -v s="$seconds" 'BEGIN {printf "%.0f", e / s}') events/s written to the trace" \
     "over the ${seconds} s"
echo "workload: $calls statements executed (workers' own count) in ${elapsed} s from the gate to the workers' stop," \
     "$(awk -v c="$calls" -v s="$elapsed" 'BEGIN {printf "%.0f", c / s}')/s"
grep -E "recording ended|trace stopped" "$work/record.log" || true
