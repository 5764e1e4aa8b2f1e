#!/usr/bin/env bash
# Per-event cost of each probe family, side by side with the kernel's floor and with bpftrace, in one run.
#
# For each case, repetitions alternate the four modes (alone, floor, ours, bpftrace; ABCD ABCD ...):
#   alone     the workload by itself
#   floor     empty BPF programs (bpf/bench/probe_floor.bpf.c) on exactly our hooks: same USDT notes, same uprobe and
#             uretprobe addresses with the same PID filter, same block tracepoints and attach type (tp_btf)
#   ours      the family's real BPF object loaded alone, attached as the agent attaches it, through the agent's own
#             classes (tests/bench/bench_probes.cpp): per PID for GC and libpq, on the postgres binary for every
#             backend, system-wide on the block tracepoints; ring buffers drained every 250 ms
#   bpftrace  the same measurement written by hand for bpftrace (tests/bench/bpftrace/*.bt), -p PID where ours is
#             per PID
# Cases: gc-usdt, gc-methoddef (python3.11 gc.collect(0) loop; USDT notes, or the uprobe pair on the function found
# through the gc module's PyMethodDef table, which is what the agent uses for a USDT-less, stripped CPython),
# libpq (psycopg2 SELECT 1 loop), pgserver (pgbench -S, one client), blockio-read / blockio-write (O_DIRECT 4 KiB),
# reactor-other (an unprofiled process's getppid() loop: what every task on the host pays for the reactor family's
# raw_syscalls variant, which runs on every syscall), reactor-epoll (a profiled main thread's epoll.poll(0) loop,
# raw_syscalls variant), reactor-epoll-tp (the same on the per-syscall epoll tracepoints, which need tracefs: the
# loader and bpftrace then run in a private mount namespace with tracefs mounted, when the host has not mounted it).
# Events come from the workload's own record (loop counters, pgbench's transactions, requests issued) and time from
# its own clock: the process's CPU time (user + system: the traps and the BPF programs of uprobes/USDT run in its
# context, and other engineers' builds on the same CPUs do not inflate it; for pgserver the CPU time of the backends,
# where those probes run, from the postmaster's reaped-children times), or with --clock wall the elapsed time (for
# pgserver pgbench's own tps). Reported: ns per event above the workload alone, paired within each repetition
# (median, min-max), and ours/floor and ours/bpftrace of the medians. --bpf-stats also turns
# kernel.bpf_stats_enabled on (it slows every program: a separate run) and reports each attacher's BPF run time per
# workload event (the programs whose fds the attacher holds, from /proc/PID/fdinfo).
#
#   sudo scripts/bench_probes.sh [--family gc|libpq|pgserver|blockio|reactor|all] [--repeat 3] [--scale 1] [--smoke]
#                                [--clock cpu|wall] [--bpf-stats] [--no-bpftrace] [--keep]
# --scale X   multiplies every loop's event count; --smoke: repeat 1 with tiny counts (checks that the benchmark
# works and that our probes saw every event; numbers meaningless). bpftrace (Debian package bpftrace) is used when
# installed; without it the bpftrace column is skipped with a message. --keep leaves the work directory.
# Environment: SP_BUILD_DIR (default build/). It starts (and removes) a PostgreSQL cluster of its own.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

family=all repeat=3 scale=1 smoke=0 use_bpftrace=1 keep=0 clock=cpu bpf_stats=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --family) family=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --scale) scale=$2; shift ;;
    --smoke) smoke=1 repeat=1 ;;
    --clock) clock=$2; shift ;;
    --bpf-stats) bpf_stats=1 ;;
    --no-bpftrace) use_bpftrace=0 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case $family in
  gc) cases=(gc-usdt gc-methoddef) ;;
  libpq) cases=(libpq) ;;
  pgserver) cases=(pgserver) ;;
  blockio) cases=(blockio-read blockio-write) ;;
  reactor) cases=(reactor-other reactor-epoll reactor-epoll-tp) ;;
  all) cases=(gc-usdt gc-methoddef libpq pgserver blockio-read blockio-write reactor-other reactor-epoll reactor-epoll-tp) ;;
  *) echo "--family: expected gc, libpq, pgserver, blockio, reactor or all" >&2; exit 2 ;;
esac
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "--repeat: expected a positive integer" >&2; exit 2; }
[[ $scale =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--scale: expected a positive number" >&2; exit 2; }
[[ $clock == cpu || $clock == wall ]] || { echo "--clock: expected cpu or wall" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "needs root (loads BPF programs, attaches uprobes)" >&2; exit 1; }

build=${SP_BUILD_DIR:-$SP_ROOT/build}
loader=$build/sp_bench_probes
[[ -x $loader ]] || { echo "no $loader: build first (cmake --build $build --target sp_bench_probes)" >&2; exit 1; }
[[ -x /usr/bin/python3.11 ]] ||
  { echo "no /usr/bin/python3.11 (Debian's, with USDT): run scripts/setup.sh" >&2; exit 1; }
pgbench=$SP_PG_BIN/pgbench
workloads=$SP_ROOT/tests/bench/probe_workloads.py
bt_dir=$SP_ROOT/tests/bench/bpftrace

modes=(alone floor ours bpftrace)
if [[ $use_bpftrace -eq 1 ]] && ! command -v bpftrace >/dev/null; then
  echo "bpftrace not installed (apt-get install bpftrace): the bpftrace column is skipped" >&2
  use_bpftrace=0
fi
[[ $use_bpftrace -eq 1 ]] || modes=(alone floor ours)

# Events per run: a sub-run lasts about 0.1-1 s of CPU here, and the whole default run stays near 10 minutes even
# on this busy shared machine (2 repetitions took 7.5 min); --smoke only checks that everything works.
declare -A count=([gc-usdt]=10000 [gc-methoddef]=10000 [libpq]=4000 [pgserver]=3000 [blockio-read]=2000
                  [blockio-write]=2000 [reactor-other]=1000000 [reactor-epoll]=300000 [reactor-epoll-tp]=300000)
if [[ $smoke -eq 1 ]]; then
  for c in "${!count[@]}"; do count[$c]=200; done
fi
for c in "${!count[@]}"; do
  count[$c]=$(awk -v n="${count[$c]}" -v s="$scale" 'BEGIN {v = int(n * s); print v < 1 ? 1 : v}')
done

work=$(mktemp -d /tmp/sp-bench-probes.XXXXXX)
chmod 0755 "$work"
own_pg=0
pids=()
stats_before=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
  set +e  # every step runs, whatever the one before it returned
  [[ $bpf_stats -eq 1 ]] && echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ $own_pg -eq 1 ]] && sp_pg_stop "$work/pg"
  if [[ $keep -eq 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Also used inside the subshell of one run: stop what that run started before giving up.
die() {
  echo "bench_probes: $*" >&2
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  exit 1
}

# Private copies of the interpreter, libpq and the postgres server: uprobes live on the file's inode, so probes on
# these trap only the benchmark's own processes, never the other processes of the machine that use the system's
# files (bpftrace 0.17 plants its uprobes in every process mapping the file, even with -p; the pgserver probes, ours
# included, attach to the binary for every backend by design).
mkdir -p "$work/bin" "$work/lib"
cp /usr/bin/python3.11 "$work/bin/python3.11"
python=$work/bin/python3.11
# awk reads to the end: an early exit would make ldconfig die of SIGPIPE, and pipefail + set -e end the script silently
libpq=$(ldconfig -p | awk '/libpq\.so\.5 / && !found {print $NF; found = 1}')
[[ -n $libpq ]] || { echo "no libpq.so.5 (libpq5): run scripts/setup.sh" >&2; exit 1; }
cp "$(readlink -f "$libpq")" "$work/lib/libpq.so.5"
export LD_LIBRARY_PATH=$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

needs_pg=0
for c in "${cases[@]}"; do [[ $c == libpq || $c == pgserver ]] && needs_pg=1; done
if [[ $needs_pg -eq 1 ]]; then
  # A cluster of our own, run by a copy of the server binary. PostgreSQL finds its share and lib directories
  # relative to its executable: mirror the layout with symbolic links.
  pg_major=$(basename "$(dirname "$SP_PG_BIN")")
  root=$work/pgroot
  mkdir -p "$root/lib/postgresql/$pg_major/bin" "$root/share/postgresql"
  cp "$SP_PG_BIN/postgres" "$root/lib/postgresql/$pg_major/bin/postgres"
  ln -s "$(dirname "$SP_PG_BIN")/lib" "$root/lib/postgresql/$pg_major/lib"
  ln -s "/usr/share/postgresql/$pg_major" "$root/share/postgresql/$pg_major"
  postgres=$root/lib/postgresql/$pg_major/bin/postgres
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  mkdir -p "$work/pg"
  chown postgres: "$work/pg"
  pg_port=$(sp_free_port)
  runuser -u postgres -- "$SP_PG_BIN/initdb" -D "$work/pg/data" -A trust -U synapse --no-sync \
    >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; die "initdb failed"; }
  runuser -u postgres -- "$SP_PG_BIN/pg_ctl" -D "$work/pg/data" -p "$postgres" -l "$work/pg/server.log" -w -t 60 \
    -o "-p $pg_port -k $work/pg -c listen_addresses='' -c fsync=off -c autovacuum=off" start >/dev/null ||
    { cat "$work/pg/server.log" >&2; die "could not start the benchmark's PostgreSQL"; }
  own_pg=1
  psql_opts=(-h "$work/pg" -p "$pg_port" -U synapse)
  "$SP_PG_BIN/createdb" "${psql_opts[@]}" sp_bench_probes
  "$pgbench" -i -s 1 -q "${psql_opts[@]}" sp_bench_probes >"$work/pgbench-init.log" 2>&1 ||
    { cat "$work/pgbench-init.log" >&2; die "pgbench -i failed"; }
fi
if [[ " ${cases[*]} " == *" blockio-"* ]]; then
  # On the root file system's disk (not tmpfs): O_DIRECT needs a real block device underneath.
  dio_file=$(mktemp /var/tmp/sp-bench-probes-dio.XXXXXX)
  dd if=/dev/urandom of="$dio_file" bs=1M count=64 conv=fsync status=none
  trap 'rm -f "$dio_file"; cleanup' EXIT
fi

wait_file() {  # wait_file FILE PATTERN SECONDS WHAT
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  die "timed out waiting for $4 (see $1)"
}

# bpftrace's tracepoint probes read their formats from tracefs, and libbpf the per-syscall tracepoints' ids; mount
# it in a private mount namespace when the host has not mounted it, so nothing outside this process changes.
with_tracefs=()
if [[ ! -e /sys/kernel/tracing/events ]]; then
  with_tracefs=(unshare --mount sh -c 'mount -t tracefs nodev /sys/kernel/tracing && exec "$@"' with-tracefs)
fi
bpftrace_cmd=("${with_tracefs[@]}" bpftrace)

# start_attacher CASE MODE PID: starts the floor, ours or bpftrace for CASE (PID: the workload, 0 for system-wide
# cases) and returns once every hook is in place; sets attacher and attacher_log.
start_attacher() {
  local case=$1 mode=$2 pid=$3 tag=$1-$2-$run
  attacher_log=$work/$tag.attacher.log
  local family binary extra=() script
  case $case in
    gc-usdt) family=gc binary=$python extra=(--gc-method usdt) ;;
    gc-methoddef) family=gc binary=$python extra=(--gc-method methoddef) ;;
    libpq) family=libpq binary=$(awk '$6 ~ /libpq\.so/ {print $6; exit}' "/proc/$pid/maps") ;;
    pgserver) family=pgserver binary=$postgres ;;
    blockio-*) family=blockio binary= ;;
    reactor-other) family=reactor binary= extra=(--hooks raw_syscalls) ;;
    reactor-epoll) family=reactor binary= extra=(--hooks raw_syscalls) ;;
    reactor-epoll-tp) family=reactor binary= extra=(--hooks syscalls) ;;
  esac
  [[ $family != libpq || -n $binary ]] || die "libpq not mapped by the workload (pid $pid)"
  if [[ $mode == bpftrace ]]; then
    script=$work/$tag.bt
    case $case in
      gc-usdt) sed -e "s|@PYTHON@|$python|g" -e "s|@PID@|$pid|g" "$bt_dir/gc_usdt.bt" >"$script" ;;
      gc-methoddef)
        sed -e "s|@PYTHON@|$python|g" -e "s|@ADDR@|$gc_vaddr|g" -e "s|@PID@|$pid|g" "$bt_dir/gc_methoddef.bt" \
          >"$script" ;;
      libpq) sed -e "s|@LIBPQ@|$binary|g" -e "s|@PID@|$pid|g" "$bt_dir/libpq.bt" >"$script" ;;
      pgserver) sed "s|@POSTGRES@|$postgres|g" "$bt_dir/pgserver.bt" >"$script" ;;
      blockio-*) cp "$bt_dir/blockio.bt" "$script" ;;
      reactor-other|reactor-epoll) sed "s|@PID@|$pid|g" "$bt_dir/reactor_raw.bt" >"$script" ;;
      reactor-epoll-tp) sed "s|@PID@|$pid|g" "$bt_dir/reactor_tp.bt" >"$script" ;;
    esac
    local pid_opt=()
    # The reactor scripts filter on the PID themselves: -p would only add a filter of bpftrace's own.
    [[ $pid -gt 0 && $family != reactor ]] && pid_opt=(-p "$pid")
    "${bpftrace_cmd[@]}" "${pid_opt[@]}" "$script" >"$attacher_log" 2>&1 &
    attacher=$!
    pids+=("$attacher")
    wait_file "$attacher_log" '^attached' 60 "bpftrace to attach ($case)"
  else
    local pid_opt=() prefix=()
    [[ $pid -gt 0 ]] && pid_opt=(--pid "$pid")
    [[ $case == reactor-epoll-tp ]] && prefix=("${with_tracefs[@]}")
    "${prefix[@]}" "$loader" attach "$family" "$mode" "${pid_opt[@]}" ${binary:+--binary "$binary"} "${extra[@]}" \
      --ready "$work/$tag.ready" >"$attacher_log" 2>&1 &
    attacher=$!
    pids+=("$attacher")
    local i
    for ((i = 0; i < 600; i++)); do
      [[ -e $work/$tag.ready ]] && return 0
      kill -0 "$attacher" 2>/dev/null || { cat "$attacher_log" >&2; die "$mode loader for $case exited"; }
      sleep 0.05
    done
    die "timed out waiting for the $mode loader ($case)"
  fi
}

# BPF run time of the attacher's own programs, per workload event: every BPF program fd the attacher holds
# (/proc/PID/fdinfo shows prog_id, run_time_ns and run_cnt), each program counted once.
bpf_time() {  # bpf_time N -> writes "bpf <ns per event> <runs per event>" to $attacher_log.bpf
  local f
  for f in /proc/"$attacher"/fdinfo/*; do
    awk '/^prog_id:/ {id = $2} /^run_time_ns:/ {t = $2} /^run_cnt:/ {c = $2} END {if (c != "") print id, t, c}' "$f" \
      2>/dev/null || true
  done | sort -u -k1,1n | awk -v n="$1" '{t += $2; c += $3} END {printf "bpf %.1f %.2f\n", t / n, c / n}' \
    >"$attacher_log.bpf"
}

stop_attacher() {
  [[ -n ${attacher:-} ]] || return 0
  [[ $bpf_stats -eq 1 ]] && bpf_time "$1"
  # bpftrace can take minutes to detach on a busy machine (seen: 6 min in dyn_event_seq_start); the workload is done,
  # so nothing is measured any more: ask again now and then, and give up on it after a minute.
  local i
  kill -INT "$attacher" 2>/dev/null || true
  for ((i = 1; i <= 600; i++)); do
    kill -0 "$attacher" 2>/dev/null || break
    ((i % 50 == 0)) && kill -INT "$attacher" 2>/dev/null
    sleep 0.1
  done
  kill -KILL "$attacher" 2>/dev/null || true
  wait "$attacher" 2>/dev/null || true
  attacher=
}

# Our probes must have seen every event of the run: GC pauses, libpq records, commits, block requests.
check_ours() {
  local case=$1 n=$2 seen
  case $case in
    gc-*) seen=$(sed -n 's/^ours: events .* pauses \([0-9]*\) .*/\1/p' "$attacher_log") ;;
    reactor-other) return 0 ;;  # an unprofiled process: nothing of it to count
    reactor-epoll*) seen=$(sed -n 's/^ours: events .* waits \([0-9]*\) .*/\1/p' "$attacher_log") ;;
    pgserver) seen=$(sed -n 's/^ours: events .* commits \([0-9]*\) .*/\1/p' "$attacher_log") ;;
    blockio-*) seen=$(sed -n "s/^ours: process $wl requests \([0-9]*\)$/\1/p" "$attacher_log") ;;
    *) seen=$(sed -n 's/^ours: events \([0-9]*\) .*/\1/p' "$attacher_log") ;;
  esac
  [[ -n $seen || $case == blockio-* ]] || { cat "$attacher_log" >&2; die "ours ($case): no summary from the loader"; }
  # Block requests: the family is system-wide, and its accounting per submitting PID is checked exactly by its own
  # integration tests. Under heavy load here a few % of the workload's O_DIRECT requests were missing or attributed
  # to a kworker (an open question for that family, see docs/performance.md): this cost benchmark only requires that
  # ours recorded requests of the workload under its PID, and reports any shortfall.
  local need=$n
  if [[ $case == blockio-* ]]; then
    local total
    total=$(sed -n 's/^ours: events \([0-9]*\) .*/\1/p' "$attacher_log")
    [[ ${seen:-0} -ge $n ]] || echo "bench_probes: ours ($case) attributed ${seen:-0} of the workload's $n requests" \
      "to its PID (${total:-0} requests in all)" >&2
    need=1
  fi
  [[ ${seen:-0} -ge $need ]] || { cat "$attacher_log" >&2; die "ours ($case) saw $seen events of the workload's $n"; }
}

# run_once CASE MODE: prints "<ns per event>" measured by the workload itself.
run_once() {
  local case=$1 mode=$2 n=${count[$1]} tag=$1-$2-$run wl wlog=$work/$1-$2-$run.workload.log ns events
  local gate=$work/$tag.gate ready=$work/$tag.wready
  attacher=
  case $case in
    gc-*|libpq)
      if [[ $case == libpq ]]; then
        "$python" "$workloads" pq "$n" "$gate" "$ready" "$work/pg" "$pg_port" synapse sp_bench_probes \
          >"$wlog" 2>&1 &
      else
        "$python" "$workloads" gc "$n" "$gate" "$ready" >"$wlog" 2>&1 &
      fi
      wl=$!
      pids+=("$wl")
      wait_file "$ready" ready 30 "the $case workload"
      [[ $mode == alone ]] || start_attacher "$case" "$mode" "$wl"
      touch "$gate"
      wait "$wl" || { cat "$wlog" >&2; die "$case workload failed"; }
      ;;
    reactor-*)
      "$python" "$workloads" "$([[ $case == reactor-other ]] && echo sys || echo epoll)" "$n" "$gate" "$ready" \
        >"$wlog" 2>&1 &
      wl=$!
      pids+=("$wl")
      wait_file "$ready" ready 30 "the $case workload"
      # reactor-other: the profiled process is this script (a main thread that hardly calls anything), the workload
      # is any other process of the host.
      [[ $mode == alone ]] || start_attacher "$case" "$mode" "$([[ $case == reactor-other ]] && echo $$ || echo "$wl")"
      touch "$gate"
      wait "$wl" || { cat "$wlog" >&2; die "$case workload failed"; }
      ;;
    blockio-*)
      [[ $mode == alone ]] || start_attacher "$case" "$mode" 0
      "$python" "$workloads" dio "${case#blockio-}" "$n" "$gate" "$ready" "$dio_file" >"$wlog" 2>&1 &
      wl=$!
      pids+=("$wl")
      wait_file "$ready" ready 30 "the $case workload"
      touch "$gate"
      wait "$wl" || { cat "$wlog" >&2; die "$case workload failed"; }
      ;;
    pgserver)
      [[ $mode == alone ]] || start_attacher "$case" "$mode" 0
      pm=$(head -n 1 "$work/pg/data/postmaster.pid")
      cpu_before=$(awk '{print $16 + $17}' "/proc/$pm/stat")
      # One client, select-only, simple protocol; the tps excluding connection set-up is pgbench's own clock.
      "$pgbench" -n -S -c 1 -j 1 -t "$n" "${psql_opts[@]}" sp_bench_probes >"$wlog" 2>&1 ||
        { cat "$wlog" >&2; die "pgbench failed"; }
      events=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$wlog")
      [[ $events == "$n" ]] || { cat "$wlog" >&2; die "pgbench processed ${events:-?} of $n transactions"; }
      # CPU time of the backends: the postmaster reaps each one, and its cutime + cstime (fields 16, 17 of its stat)
      # then include it; autovacuum is off, so no other child comes and goes. Clock ticks: 10 ms here, hence the
      # larger transaction count of this case.
      sleep 0.3
      cpu_after=$(awk '{print $16 + $17}' "/proc/$pm/stat")
      awk '/^tps = .*without initial connection time/ {printf "events=%d ns=%d cpu_ns=%d\n", n, n * 1e9 / $3, c}' \
        n="$n" c="$(( (cpu_after - cpu_before) * 1000000000 / $(getconf CLK_TCK) ))" "$wlog" >"$wlog.truth"
      wlog=$wlog.truth
      ;;
  esac
  stop_attacher "$n"
  [[ $mode == ours ]] && check_ours "$case" "$n"
  if [[ $bpf_stats -eq 1 && $mode != alone ]]; then
    bpf=$(sed -n 's/^bpf \([0-9.]*\) \([0-9.]*\)$/\1 \2/p' "$work/$case-$mode-$run.attacher.log.bpf")
    echo "$run $case $mode ${bpf:-? ?}" >>"$work/bpf-stats.txt"
  fi
  local field=ns
  [[ $clock == cpu ]] && field=cpu_ns
  events=$(sed -n 's/^events=\([0-9]*\) .*/\1/p' "$wlog")
  ns=$(sed -n "s/^events=.* $field=\([0-9]*\).*/\1/p" "$wlog")
  [[ ${events:-0} -eq $n && ${ns:-0} -gt 0 ]] || { cat "$wlog" >&2; die "no ground truth from the $case workload"; }
  awk -v ns="$ns" -v n="$n" 'BEGIN {printf "%.1f\n", ns / n}'
}

if [[ " ${cases[*]} " == *" gc-methoddef "* ]]; then
  read -r _ _ _ gc_vaddr _ _ < <("$loader" gc-plan "$python" methoddef) || die "no PyMethodDef plan for $python"
fi

[[ $bpf_stats -eq 1 ]] && echo 1 >/proc/sys/kernel/bpf_stats_enabled
echo "bench_probes: cases ${cases[*]}; modes ${modes[*]}; $repeat repetition(s); events per run:" \
  "$(for c in "${cases[@]}"; do printf '%s=%s ' "$c" "${count[$c]}"; done)"
results=$work/results.txt
: >"$results"
for ((run = 1; run <= repeat; run++)); do
  for c in "${cases[@]}"; do
    line="run $run $c:"
    for m in "${modes[@]}"; do
      v=$(run_once "$c" "$m")
      echo "$run $c $m $v" >>"$results"
      line+=" $m=${v}"
    done
    echo "$line  (ns per event, workload's own clock: $([[ $clock == cpu ]] && echo "CPU" || echo "elapsed"))"
  done
done

# Per repetition: ns per event above the same repetition's run alone; then median and min-max over repetitions.
echo
echo "ns per event above the workload alone: median [min-max] over $repeat repetition(s); ratios of the medians"
printf '%-14s %10s  %-28s %-28s %-28s %9s %12s\n' case alone floor ours bpftrace ours/floor ours/bpftrace
for c in "${cases[@]}"; do
  awk -v c="$c" -v has_bt="$use_bpftrace" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function stats(m,   i, n, d, lo, hi) {
      n = 0
      for (i in alone) if ((i, m) in v) { d = v[i, m] - alone[i]; n++; arr[n] = d
        if (n == 1 || d < lo) lo = d; if (n == 1 || d > hi) hi = d }
      if (n == 0) { med[m] = ""; return "-" }
      med[m] = median(arr, n)
      return sprintf("%.0f [%.0f..%.0f]", med[m], lo, hi)
    }
    $2 == c && $3 == "alone" { alone[$1] = $4; na++; al[na] = $4 }
    $2 == c && $3 != "alone" { v[$1, $3] = $4 }
    END {
      f = stats("floor"); o = stats("ours"); b = has_bt ? stats("bpftrace") : "skipped"
      rf = (med["floor"] > 0 && med["ours"] != "") ? sprintf("%.2f", med["ours"] / med["floor"]) : "-"
      rb = (has_bt && med["bpftrace"] > 0 && med["ours"] != "") ? sprintf("%.2f", med["ours"] / med["bpftrace"]) : "-"
      printf "%-14s %10.0f  %-28s %-28s %-28s %9s %12s\n", c, median(al, na), f, o, b, rf, rb
    }' "$results"
done
echo "(alone: ns per event of the workload by itself, median. Machine shared and noisy: medians of paired runs.)"
if [[ $bpf_stats -eq 1 ]]; then
  echo
  echo "BPF run time per workload event (bpf_stats, medians over repetitions): ns, program runs per event"
  for c in "${cases[@]}"; do
    for m in "${modes[@]}"; do
      [[ $m == alone ]] && continue
      awk -v c="$c" -v m="$m" '$2 == c && $3 == m {print $4, $5}' "$work/bpf-stats.txt" | sort -n |
        awk -v c="$c" -v m="$m" '{t[NR] = $1; r[NR] = $2}
          END {if (!NR) exit; i = int((NR + 1) / 2); printf "%-14s %-9s %8.0f ns  %.2f runs\n", c, m, t[i], r[i]}'
    done
  done
fi
