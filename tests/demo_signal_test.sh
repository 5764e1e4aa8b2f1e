#!/usr/bin/env bash
# scripts/demo.sh stops on the first signal: started in a session of its own (as from a terminal) with the build in
# BUILD_DIR, once its agent serves /metrics it gets (1) SIGINT to the script alone (kill -INT, a service manager),
# (2) SIGINT to its whole process group (Ctrl-C at a terminal), (3) SIGTERM to the script (timeout, systemd). Each time
# it must end within a few seconds with 128+signal (130, 130, 143), and nothing it started may be left: not the agent,
# not the workload, not its PostgreSQL, not its files.
# Needs root (BPF probes, a PostgreSQL cluster); exits 77 (skipped) otherwise.
set -euo pipefail
build=${1:?usage: demo_signal_test.sh BUILD_DIR}
source "$(dirname "$0")/../scripts/lib/common.sh"
[[ $(id -u) -eq 0 ]] || { echo "not root: the demo needs it"; exit 77; }
[[ -x $build/synapse-profiler ]] || { echo "$build/synapse-profiler is not built"; exit 1; }

tmp=$(mktemp -d /tmp/sp-demo-signal.XXXXXX)
demo_pid=
cleanup() {
  # A demo that did not stop: end its session for good, so that a failing test leaves nothing running.
  if [[ -n $demo_pid ]]; then
    pkill -KILL -s "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# alive PID: the process exists and is not a zombie waiting for its parent.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# run_case NAME SIGNAL TARGET EXPECTED_STATUS WHEN: TARGET is "script" (its PID) or "group" (its process group); WHEN
# is "setup" (1 s after the start, during the set-up), "agent" (as soon as the agent serves /metrics, while the
# script waits for it to settle) or "loop" (after the first summary, in the sleep between two).
run_case() {
  local name=$1 sig=$2 target=$3 expected=$4 when=$5 out port procs=() pgpid='' workdir='' status p
  out=$tmp/$name.out
  port=$(sp_free_port 19400 19499)
  echo "== $name: $sig to the $target ($when)"
  # setsid: its own session and process group, as under a terminal. env --default-signal: a background job of a
  # non-interactive shell starts with SIGINT ignored, which bash could not trap; a terminal's shell does not do that.
  # SP_BUILD_DIR + SP_BUILD_TARGET: the set-up finds the binary built and builds nothing.
  SP_BUILD_DIR=$build SP_BUILD_TARGET=synapse-profiler \
    env --default-signal=INT,TERM,HUP setsid "$SP_ROOT/scripts/demo.sh" --listen "127.0.0.1:$port" \
    </dev/null >"$out" 2>&1 &
  demo_pid=$!
  local sid
  sid=$(ps -o sid= -p "$demo_pid" | tr -d ' ')
  [[ $sid == "$demo_pid" ]] || { echo "FAIL: demo.sh ($demo_pid) is not the leader of its own session ($sid)"; return 1; }
  local ready=0
  for _ in $(seq 120); do  # 60 s: set-up, a PostgreSQL cluster, three workload processes, the agent
    case $when in
      setup) sleep 1; ready=1 ;;
      agent) curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$port/metrics" 2>/dev/null && ready=1 ;;
      loop) grep -q '^---- ' "$out" && { sleep 1; ready=1; } ;;
    esac
    [[ $ready -eq 1 ]] && break
    alive "$demo_pid" || break
    sleep 0.5
  done
  if [[ $ready -ne 1 ]] || ! alive "$demo_pid"; then echo "FAIL: demo.sh never got to $when"; cat "$out"; return 1; fi
  # What it started: every process of its session (agent, workload, the script's own children) and the postmaster,
  # which pg_ctl puts in a session of its own.
  mapfile -t procs < <(ps -o pid= --sid "$demo_pid" | tr -d ' ' | grep -vx "$demo_pid")
  workdir=$(ps -o args= --sid "$demo_pid" | grep -o '/tmp/sp-demo\.[A-Za-z0-9]*' | head -n 1 || true)
  if [[ -n $workdir && -f $workdir/pg/data/postmaster.pid ]]; then
    pgpid=$(head -n 1 "$workdir/pg/data/postmaster.pid")
    procs+=("$pgpid")
  fi
  echo "started: ${#procs[@]} processes${workdir:+, workload in $workdir}${pgpid:+, postmaster $pgpid}"
  if [[ $when != setup ]] && ! grep -q "starting the bundled Synapse-like workload" "$out"; then
    echo "note: Synapse processes already run here, so the demo started no workload of its own: only its agent is checked"
  fi

  local sent=$EPOCHREALTIME
  if [[ $target == group ]]; then kill -s "$sig" -- "-$demo_pid"; else kill -s "$sig" "$demo_pid"; fi
  for _ in $(seq 50); do alive "$demo_pid" || break; sleep 0.2; done  # 10 s
  if alive "$demo_pid"; then
    echo "FAIL: demo.sh still running 10 s after $sig"; tail -n 20 "$out"; return 1
  fi
  local took
  took=$(awk -v a="$sent" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  status=0
  wait "$demo_pid" || status=$?
  demo_pid=
  local failed=0
  [[ $status -eq $expected ]] || { echo "FAIL: exit status $status, expected $expected"; failed=1; }
  for p in "${procs[@]}"; do
    if alive "$p"; then echo "FAIL: left running: $(ps -o pid=,args= -p "$p")"; failed=1; fi
  done
  if [[ -n $workdir && -e $workdir ]]; then echo "FAIL: $workdir left behind"; failed=1; fi
  grep -q "demo: stopping" "$out" || { echo "FAIL: no clean-up message"; failed=1; }
  if [[ $failed -ne 0 ]]; then tail -n 20 "$out"; return 1; fi
  echo "ok: status $status after ${took} s, nothing left"
}

run_case sigint-script INT script 130 agent
run_case sigint-group INT group 130 loop
run_case sigterm-script TERM script 143 loop
run_case sigterm-setup TERM script 143 setup
