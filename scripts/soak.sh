#!/usr/bin/env bash
# Soak: the agent runs for --minutes next to Synapse-like workers that keep PostgreSQL busy, while one worker is
# restarted over and over (new PID each time) and /metrics is scraped every 5 s. The agent's RSS and open file
# descriptors are sampled at every scrape into DIR/samples.csv; DIR/summary.txt says what happened. Stops by itself.
#   sudo scripts/soak.sh [--minutes 30] [--out DIR] [--smoke]
# Fails (exit 1) when the agent dies, stops answering, or grows: the median of the last 10 % of the samples may
# exceed the median of the second 10 % (the first is start-up) by at most 16 MiB of RSS and 16 open fds (one worker's
# probes are about 10 fds; plus 16 per Synapse process more on the host at the end, as the agent profiles every one,
# other people's included; SP_SOAK_RSS_BOUND_KB, SP_SOAK_FD_BOUND override); it must exit 0 on SIGTERM at the end.
# --smoke: 50 seconds, bounds 64 MiB and 64 fds (checks that the soak still works; too short to measure growth).
# Uses the PostgreSQL of scripts/test.sh (SP_PG_*) when set, else a throwaway cluster of its own.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

seconds=$((30 * 60)) out= smoke=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "--minutes takes a positive number" >&2; exit 2; }
               seconds=$(($2 * 60)); shift ;;
    --out) out=${2:?--out takes a directory}; shift ;;
    --smoke) seconds=50 smoke=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) -eq 0 ]] || { echo "needs root (the agent loads BPF programs)" >&2; exit 1; }
rss_bound_kb=${SP_SOAK_RSS_BOUND_KB:-$((smoke ? 65536 : 16384))}
fd_bound=${SP_SOAK_FD_BOUND:-$((smoke ? 64 : 16))}
interval=5

build=${SP_BUILD_DIR:-$SP_ROOT/build}
bin=$build/synapse-profiler
[[ -x $bin ]] || { echo "no $bin: build first (cmake -S . -B build && cmake --build build)" >&2; exit 1; }

work=$(mktemp -d /tmp/sp-soak.XXXXXX)
out=${out:-$work/out}
mkdir -p "$out"
pids=()
churn_pid=
cleanup() {
  set +e  # every step runs, whatever the one before it returned (the churn loop may be gone already)
  [[ -n $churn_pid ]] && kill "$churn_pid" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -d $work/pg ]] && sp_pg_stop "$work/pg"
  # Keep the results when they were written into the work directory.
  [[ $out == "$work"/* ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SP_PG_PORT:-} ]]; then
  sp_pg_start "$work/pg" >/dev/null
fi

# worker_config NAME METRICS_PORT: a worker's Synapse config with its database.
worker_config() {
  cat >"$work/$1.yaml" <<YAML
worker_name: $1
worker_app: synapse.app.generic_worker
enable_metrics: true
worker_listeners: [{type: metrics, port: $2, bind_addresses: ['127.0.0.1']}]
database: {name: psycopg2, args: {host: $SP_PG_SOCKET_DIR, port: $SP_PG_PORT, user: $SP_PG_USER, dbname: $SP_PG_DB}}
media_store_path: $work/$1.media
YAML
}

# start_worker NAME DURATION [workload options...]: runs in the background, output appended to DIR/NAME.log.
start_worker() {
  local name=$1 duration=$2; shift 2
  (cd "$SP_ROOT/tests/workload" && exec /usr/bin/python3.11 -m synapse.app.generic_worker -c "$work/$name.yaml" \
      --duration "$duration" "$@") >>"$out/$name.log" 2>&1 &
}

port=$(sp_free_port 19500 19599)
"$bin" run --listen "127.0.0.1:$port" --rescan-interval 2s --scrape-interval 5s --forget-after 2m >"$out/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
for _ in $(seq 100); do curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "127.0.0.1:$port/readyz" >/dev/null || { echo "the agent did not come up: $out/agent.log" >&2; exit 1; }

# Two steady workers for the whole run: transactions, GC, media writes.
# Each from its own port range: the previous one may not listen yet when the next port is picked.
for i in 1 2; do
  name=soak_steady$i
  worker_config "$name" "$(sp_free_port $((19600 + 50 * (i - 1))) $((19649 + 50 * (i - 1))))"
  start_worker "$name" $((seconds + 60)) --query-rate 40 --gc-schedule 0:5,1:0.5,2:0.1 --io-rate 0.5
  pids+=("$!")
done
# Churn: one worker restarted every few seconds (a new PID each time, sometimes killed, sometimes exiting itself).
# Each life has a new name, as workers named after their pods do: soak_churn_1, soak_churn_2, ... The agent forgets a
# name --forget-after (2 min) after its last process went, so its memory must stay flat even though the names don't
# repeat.
churn_port=$(sp_free_port 19700 19799)
(
  n=0
  trap 'kill $w 2>/dev/null; exit 0' TERM
  while true; do
    n=$((n + 1))
    echo "$n" >"$work/churn.count"
    worker_config "soak_churn_$n" "$churn_port"
    start_worker "soak_churn_$n" $((3 + RANDOM % 8)) --query-rate 20 --gc-schedule 0:10 --io-rate 0
    w=$!
    if ((n % 3 == 0)); then sleep $((1 + RANDOM % 4)); kill -KILL "$w" 2>/dev/null || true; fi
    wait "$w" || true
    sleep 0.$((RANDOM % 10))
  done
) 2>>"$out/churn.log" &
churn_pid=$!

# bpf_links: open fds of the agent that hold a BPF program (links and programs).
echo "elapsed_s,rss_kb,fds,threads,metrics_bytes,scrape_ok,workers,bpf_links,churn_starts" >"$out/samples.csv"
start=$(date +%s)
failed_scrapes=0 samples=0
while true; do
  now=$(date +%s)
  elapsed=$((now - start))
  ((elapsed >= seconds)) && break
  kill -0 "$agent" 2>/dev/null || { echo "the agent died after ${elapsed} s: $out/agent.log" >&2; exit 1; }
  ok=1 bytes=0 workers=0
  if curl -fs -m 5 "127.0.0.1:$port/metrics" >"$work/metrics.txt" 2>/dev/null; then
    bytes=$(wc -c <"$work/metrics.txt")
    workers=$(grep -c '^synapse_profiler_worker_info{' "$work/metrics.txt" || true)
  else
    ok=0 failed_scrapes=$((failed_scrapes + 1))
  fi
  # fds come and go while they are counted: a vanished one is no error.
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$agent/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$agent/status")
  fds=$( (find "/proc/$agent/fd" -mindepth 1 -maxdepth 1 2>/dev/null || true) | wc -l)
  progs=$( (cat "/proc/$agent"/fdinfo/* 2>/dev/null || true) | grep -c '^prog_id:' || true)
  echo "$elapsed,$rss,$fds,$threads,$bytes,$ok,$workers,$progs,$(cat "$work/churn.count" 2>/dev/null || echo 0)" \
    >>"$out/samples.csv"
  samples=$((samples + 1))
  sleep $((interval - ($(date +%s) - now) > 0 ? interval - ($(date +%s) - now) : 0))
done

kill "$churn_pid" 2>/dev/null || true
wait "$churn_pid" 2>/dev/null || true
churn_pid=
restarts=$(cat "$work/churn.count" 2>/dev/null || echo 0)
kill -TERM "$agent"
agent_status=0
wait "$agent" || agent_status=$?

# Warm-up median vs final median, per column (2: RSS kB, 3: fds).
median_of() {  # median_of COLUMN FIRST_ROW LAST_ROW (data rows, 1-based)
  tail -n +2 "$out/samples.csv" | sed -n "$2,$3p" | cut -d, -f"$1" | sort -n |
    awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'
}
tenth=$(((samples + 9) / 10))
rss_warm=$(median_of 2 $((tenth + 1)) $((2 * tenth)))
rss_end=$(median_of 2 $((samples - tenth + 1)) "$samples")
fd_warm=$(median_of 3 $((tenth + 1)) $((2 * tenth)))
fd_end=$(median_of 3 $((samples - tenth + 1)) "$samples")
rss_max=$(tail -n +2 "$out/samples.csv" | cut -d, -f2 | sort -n | tail -1)
fd_max=$(tail -n +2 "$out/samples.csv" | cut -d, -f3 | sort -n | tail -1)
found=$(grep -c 'found Synapse process pid .* worker soak_churn_' "$out/agent.log" || true)
attached=$(grep -c 'gc: attached to worker soak_churn_' "$out/agent.log" || true)
forgotten=$(grep -c 'worker soak_churn_[0-9]* has been gone for' "$out/agent.log" || true)
bytes_warm=$(median_of 5 $((tenth + 1)) $((2 * tenth)))
bytes_end=$(median_of 5 $((samples - tenth + 1)) "$samples")

verdict=PASS
problems=()
((samples >= 3)) || problems+=("only $samples samples")
((rss_end - rss_warm <= rss_bound_kb)) || problems+=("RSS grew by $((rss_end - rss_warm)) kB (bound $rss_bound_kb)")
# The agent finds every Synapse process on the host, others' too: each one more at the end may hold one worker's fds.
workers_warm=$(median_of 7 $((tenth + 1)) $((2 * tenth)))
workers_end=$(median_of 7 $((samples - tenth + 1)) "$samples")
fd_allowed=$((fd_bound + (workers_end > workers_warm ? 16 * (workers_end - workers_warm) : 0)))
((fd_end - fd_warm <= fd_allowed)) || problems+=("open fds grew by $((fd_end - fd_warm)) (bound $fd_allowed)")
((failed_scrapes == 0)) || problems+=("$failed_scrapes scrapes of /metrics failed")
((agent_status == 0)) || problems+=("the agent exited $agent_status on SIGTERM")
((${#problems[@]} == 0)) || verdict=FAIL
{
  echo "soak: $((seconds / 60)) min $((seconds % 60)) s, $samples samples every $interval s, agent $bin"
  echo "churn worker starts: $restarts; agent found $found of them, attached GC to $attached, forgot $forgotten names"
  echo "/metrics bytes (median): 2nd tenth $bytes_warm, last tenth $bytes_end"
  echo "RSS kB: median of the 2nd tenth $rss_warm, final median $rss_end, max $rss_max (growth bound $rss_bound_kb kB)"
  echo "open fds: median of the 2nd tenth $fd_warm, final median $fd_end, max $fd_max (growth bound $fd_allowed)"
  echo "workers on the host (median): 2nd tenth $workers_warm, last tenth $workers_end"
  echo "failed /metrics scrapes: $failed_scrapes; agent exit status on SIGTERM: $agent_status"
  echo "result: $verdict${problems:+ (${problems[*]})}"
  echo "samples: $out/samples.csv; agent log: $out/agent.log"
} | tee "$out/summary.txt"
[[ $verdict == PASS ]]
