#!/usr/bin/env bash
# The main job for a newcomer: set up, build, and run the agent against the Synapse processes on this machine. When
# none is running, it first starts the bundled Synapse-like workload (a main process and two workers on a PostgreSQL
# cluster of its own). It prints where the metrics are and a short live summary per worker.
#   scripts/demo.sh [--listen HOST:PORT] [--duration SECONDS]
# It needs root (BPF probes, packages, a PostgreSQL cluster): run from another user it starts itself again through sudo.
# Stopping: Ctrl-C (SIGINT), SIGTERM or SIGHUP, at any moment, stops everything the demo started (the agent, the
# workload, its PostgreSQL), removes its files and ends the script by that signal, so that its exit status is the
# usual 128+signal: 130 after Ctrl-C, 143 after SIGTERM (`timeout`, a service manager), 129 after SIGHUP. A signal
# sent to the script alone while a set-up step runs (package check, build) takes effect when that step returns;
# Ctrl-C at the terminal stops the step itself at once.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

args=("$@")
listen=127.0.0.1:9477
duration=3600
while [[ $# -gt 0 ]]; do
  case $1 in
    --listen) listen=$2; shift ;;
    --duration) duration=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
sp_as_root "$0" "${args[@]}"

workdir=
cleanup() {
  set +e  # every step runs, whatever the one before it returned
  # Not to be cut short by a second Ctrl-C: a cluster or an agent would be left behind. Bounded below.
  trap '' INT TERM HUP
  trap - EXIT
  echo; echo "demo: stopping"
  # Every background job of this shell: the workload, the agent, a sleep; also one started just before the signal.
  # shellcheck disable=SC2046  # PIDs, split on purpose
  if [[ -n $(jobs -p) ]]; then
    kill $(jobs -p) 2>/dev/null
    for _ in {1..100}; do [[ -z $(jobs -pr) ]] && break; sleep 0.1; done
    # shellcheck disable=SC2046
    [[ -n $(jobs -pr) ]] && { echo "demo: still running after 10 s, killing: $(jobs -pr)"; kill -KILL $(jobs -pr); }
    wait
  fi
  [[ -n $workdir && -d $workdir/pg ]] && sp_pg_stop "$workdir/pg"
  [[ -n $workdir ]] && rm -rf "$workdir"
}
# After a signal: clean up, then end by that same signal (status 128+N for the caller, and a calling script sees that
# its child was interrupted, not that it chose to exit).
stop_on() {
  cleanup
  trap - "$1"
  kill -s "$1" $$
  exit $((128 + $(kill -l "$1")))  # only if the signal did not end us
}
trap cleanup EXIT
trap 'stop_on INT' INT
trap 'stop_on TERM' TERM
trap 'stop_on HUP' HUP
# A sleep that a signal interrupts at once: bash runs a trap only when the foreground command returns.
pause() { sleep "$1" & wait $!; }

"$SP_ROOT/scripts/setup.sh"
build=${SP_BUILD_DIR:-$SP_ROOT/build}
sp_build "$build"
bin=$build/synapse-profiler

workdir=$(mktemp -d /tmp/sp-demo.XXXXXX)
found=$("$bin" workers --json --quiet | jq length)
if [[ $found -eq 0 ]]; then
  echo "demo: no Synapse process is running here; starting the bundled Synapse-like workload"
  sp_pg_start "$workdir/pg"
  wl=$SP_ROOT/tests/workload
  for spec in "master:synapse.app.homeserver" "synchrotron1:synapse.app.generic_worker" \
              "event_persister1:synapse.app.generic_worker"; do
    name=${spec%%:*}; app=${spec#*:}; port=$(sp_free_port 19100 19199)
    cfg=$workdir/$name.yaml
    {
      [[ $name != master ]] && printf 'worker_name: %s\nworker_app: %s\n' "$name" "$app"
      echo "enable_metrics: true"
      # Like Synapse: the main process reads `listeners`, workers `worker_listeners`.
      [[ $name == master ]] && key=listeners || key=worker_listeners
      echo "$key: [{type: metrics, port: $port, bind_addresses: ['127.0.0.1']}]"
      echo "database: {name: psycopg2, args: {host: $SP_PG_SOCKET_DIR, port: $SP_PG_PORT, user: $SP_PG_USER, dbname: $SP_PG_DB}}"
      echo "workload: {media_dir: $workdir/media-$name}"
    } >"$cfg"
    # Each process needs its port before the next one picks: wait for it to listen.
    (cd "$wl" && exec /usr/bin/python3.11 -m "$app" -c "$cfg" --duration "$duration" \
        --truth "$workdir/$name.truth.jsonl") >"$workdir/$name.log" 2>&1 &
    for _ in $(seq 50); do ss -Htln "sport = :$port" | grep -q . && break; sleep 0.1; done
  done
fi

"$bin" run --listen "$listen" --rescan-interval 2s &
pause 2
echo
echo "demo: Prometheus metrics at http://$listen/metrics (liveness /healthz, readiness /readyz). Ctrl-C to stop."
# One line per worker from the agent's own series: GC pauses, libpq queries, disk bytes (its own and its backends').
summary() {
  awk '
    function lbl(name,   m) { return match($0, name "=\"[^\"]*\"") ? substr($0, RSTART + length(name) + 2, RLENGTH - length(name) - 3) : "" }
    /^synapse_profiler_worker_info\{/ { w = lbl("worker"); seen[w] = 1; pid[w] = lbl("pid") }
    /^synapse_profiler_gc_pause_seconds_count\{/ { gcn[lbl("worker")] += $NF }
    /^synapse_profiler_gc_pause_seconds_sum\{/ { gcs[lbl("worker")] += $NF }
    /^synapse_profiler_db_client_query_seconds_count\{/ { qn[lbl("worker")] += $NF }
    /^synapse_profiler_db_client_query_seconds_sum\{/ { qs[lbl("worker")] += $NF }
    /^synapse_profiler_disk_io_bytes_total\{/ { io[lbl("worker")] += $NF }
    END {
      printf "  %-20s %8s %10s %12s %10s %12s\n", "worker", "pid", "GC pauses", "GC seconds", "queries", "avg query ms"
      for (w in seen) printf "  %-20s %8s %10d %12.3f %10d %12.3f   disk %.1f MiB\n", w, pid[w], gcn[w], gcs[w], qn[w], qn[w] ? 1000 * qs[w] / qn[w] : 0, io[w] / 1048576
    }'
}

while true; do
  echo "---- $(date +%T) totals since the agent started:"
  curl -fsS --max-time 4 "http://$listen/metrics" 2>/dev/null | summary || true
  pause 5
done
