#!/usr/bin/env bash
# Cost of the libpq probe's Python frame walk (per-transaction attribution), in BPF time per libpq call, with the
# kernel's own accounting (kernel.bpf_stats_enabled: run_time_ns / run_cnt of each program).
#
# Alternates runs with attribution on (Debian's python3.11) and off (the same interpreter under the name python3.9,
# which the offset tables do not know), each a fresh agent and a fresh Synapse-like workload sending --query-rate
# transactions per second for --seconds; prints each run and the medians. bpf_stats is restored on exit.
#   sudo scripts/bench_desc_walk.sh [--repeat 3] [--seconds 12] [--query-rate 200] [--smoke]
# --smoke: one short run of each (checks that the benchmark still works; numbers meaningless).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

repeat=3 seconds=12 rate=200
while [[ $# -gt 0 ]]; do
  case $1 in
    --repeat) repeat=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --query-rate) rate=$2; shift ;;
    --smoke) repeat=1 seconds=2 rate=50 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) -eq 0 ]] || { echo "needs root (BPF, bpf_stats)" >&2; exit 1; }

build=${SP_BUILD_DIR:-$SP_ROOT/build}
bin=$build/synapse-profiler
[[ -x $bin ]] || { echo "no $bin: build first (cmake -S . -B build && cmake --build build)" >&2; exit 1; }

work=$(mktemp -d /tmp/sp-bench-desc.XXXXXX)
stats_before=$(cat /proc/sys/kernel/bpf_stats_enabled)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
  [[ -d $work/pg ]] && sp_pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [[ -z ${SP_PG_PORT:-} ]]; then
  sp_pg_start "$work/pg" >/dev/null
fi
mkdir -p "$work/bin"
cp /usr/bin/python3.11 "$work/bin/python3.9"

# One run: prints "<mode> <calls> <entry ns/call> <return ns/call>". bpf_stats are per program and vanish with the
# agent: they are read while it still runs.
run_once() {
  local mode=$1 python port mport cfg agent workload entry ret
  python=/usr/bin/python3.11
  [[ $mode == off ]] && python=$work/bin/python3.9
  port=$(sp_free_port 19300 19399)
  mport=$(sp_free_port 19400 19499)
  cfg=$work/bench-$mode.yaml
  cat >"$cfg" <<YAML
worker_name: bench_$mode
worker_app: synapse.app.generic_worker
enable_metrics: true
worker_listeners: [{type: metrics, port: $mport, bind_addresses: ['127.0.0.1']}]
database: {name: psycopg2, args: {host: $SP_PG_SOCKET_DIR, port: $SP_PG_PORT, user: $SP_PG_USER, dbname: $SP_PG_DB}}
YAML
  echo 1 >/proc/sys/kernel/bpf_stats_enabled
  "$bin" run --listen "127.0.0.1:$port" --rescan-interval 500ms --quiet &
  agent=$!; pids+=("$agent")
  (cd "$SP_ROOT/tests/workload" && exec "$python" -m synapse.app.generic_worker -c "$cfg" --duration "$seconds" \
      --gc-schedule none --io-rate 0 --query-rate "$rate" --start-gate "$work/gate-$mode" --linger 5) \
      >"$work/wl-$mode.log" 2>&1 &
  workload=$!; pids+=("$workload")
  for _ in $(seq 150); do
    curl -fs "127.0.0.1:$port/metrics" 2>/dev/null |
      grep -q "^synapse_profiler_probe_attached{worker=\"bench_$mode\",.*probe=\"libpq\".*} 1" && break
    sleep 0.1
  done
  touch "$work/gate-$mode"
  sleep "$seconds"; sleep 1
  entry=$(bpftool -j prog show name pq_exec | jq -rs 'flatten | map(select(.run_cnt != null)) |
          "\(map(.run_cnt) | add) \(map(.run_time_ns) | add)"')
  ret=$(bpftool -j prog show name pq_sync_return | jq -rs 'flatten | map(select(.run_cnt != null)) |
          "\(map(.run_cnt) | add) \(map(.run_time_ns) | add)"')
  kill "$workload" "$agent" 2>/dev/null || true
  wait "$workload" "$agent" 2>/dev/null || true
  echo 0 >/proc/sys/kernel/bpf_stats_enabled
  read -r n t <<<"$entry"
  read -r rn rt <<<"$ret"
  [[ ${n:-0} -gt 0 && ${rn:-0} -gt 0 ]] || { echo "no calls measured ($mode): see $work/wl-$mode.log" >&2; exit 1; }
  echo "$mode $n $((t / n)) $((rt / rn))"
}

results=()
for i in $(seq "$repeat"); do
  for mode in on off; do
    r=$(run_once "$mode")
    echo "run $i: $r  (mode calls entry_ns_per_call return_ns_per_call)"
    results+=("$r")
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
for mode in on off; do
  e=$(printf '%s\n' "${results[@]}" | awk -v m="$mode" '$1 == m {print $3}' | median)
  r=$(printf '%s\n' "${results[@]}" | awk -v m="$mode" '$1 == m {print $4}' | median)
  echo "median attribution $mode: pq_exec ${e} ns/call, pq_sync_return ${r} ns/call"
done
