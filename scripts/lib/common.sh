# Shared by scripts/*.sh: building and a throwaway PostgreSQL cluster owned by the calling script.
# shellcheck shell=bash

SP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SP_PG_BIN=${SP_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

sp_build() {  # sp_build BUILD_DIR [extra cmake args...]; SP_BUILD_TARGET limits the build to one target
  local dir=$1; shift
  cmake -S "$SP_ROOT" -B "$dir" -DSP_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" ${SP_BUILD_TARGET:+--target "$SP_BUILD_TARGET"}
}

# sp_as_root SCRIPT ARG...: for the scripts that need root (BPF probes, packages, a PostgreSQL cluster run as
# 'postgres'). As root, returns. Otherwise runs SCRIPT ARG... again under sudo, keeping the SP_* and SYNAPSE_PROFILER_*
# variables that sudo would drop, or, without sudo, says so and fails.
sp_as_root() {
  [[ $EUID -eq 0 ]] && return 0
  local script=$1 name var keep=()
  name=${script##*/}
  shift
  if ! command -v sudo >/dev/null; then
    echo "$name needs root (BPF probes, packages, a PostgreSQL cluster) and sudo is not installed:" \
         "run it from a root shell (e.g. su -c '$script')" >&2
    exit 1
  fi
  for var in $(compgen -e); do
    [[ $var == SP_* || $var == SYNAPSE_PROFILER_* ]] && keep+=("$var")
  done
  echo "$name needs root: running it again through sudo" >&2
  exec sudo ${keep[0]:+"--preserve-env=$(IFS=,; echo "${keep[*]}")"} -- "$BASH" "$script" "$@"
}

sp_free_port() {
  local port
  for port in $(seq "${1:-55432}" "${2:-55999}"); do
    # No pipe into grep -q: under pipefail, ss dying of SIGPIPE would make a busy port look free.
    if [[ -z $(ss -Htln "sport = :$port") ]]; then echo "$port"; return 0; fi
  done
  echo "no free TCP port found" >&2; return 1
}

# sp_pg_start DIR: initdb + start a cluster in DIR (owned by the 'postgres' system user: PostgreSQL refuses to run
# as root), trust authentication for role 'synapse', database 'synapse', listening on 127.0.0.1:$SP_PG_PORT and on a
# Unix socket in DIR. Exports SP_PG_HOST SP_PG_PORT SP_PG_SOCKET_DIR SP_PG_USER SP_PG_DB SP_PG_DATA.
sp_pg_start() {
  local dir=$1
  [[ -x $SP_PG_BIN/initdb ]] || { echo "PostgreSQL server binaries not found (run scripts/setup.sh)" >&2; return 1; }
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  mkdir -p "$dir"
  chown postgres: "$dir"
  chmod 0755 "$(dirname "$dir")" 2>/dev/null || true
  SP_PG_PORT=$(sp_free_port)
  runuser -u postgres -- "$SP_PG_BIN/initdb" -D "$dir/data" -A trust -U synapse --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  runuser -u postgres -- "$SP_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $SP_PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_buffers=1MB" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  "$SP_PG_BIN/createdb" -h "$dir" -p "$SP_PG_PORT" -U synapse synapse
  export SP_PG_HOST=127.0.0.1 SP_PG_PORT SP_PG_SOCKET_DIR=$dir SP_PG_USER=synapse SP_PG_DB=synapse SP_PG_DATA=$dir/data
  echo "PostgreSQL test cluster: 127.0.0.1:$SP_PG_PORT and socket dir $dir (data $dir/data)"
}

sp_pg_stop() {
  local dir=$1
  if [[ -f $dir/data/postmaster.pid ]]; then
    runuser -u postgres -- "$SP_PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

# sp_cached_rootfs NAME CHECK MMDEBSTRAP_ARG...: a Debian root filesystem made once by mmdebstrap with those arguments
# (suite last) and cached under $SP_ROOTFS_CACHE as NAME-KEY, KEY a hash of the arguments and the machine, so that any
# change makes a new one. CHECK is a command (a function of the caller) run with the new tree's path; the tree is kept
# only when it succeeds. Sets SP_ROOTFS to the path and SP_ROOTFS_BUILT to 1 when this call made it (0 when cached).
SP_ROOTFS_CACHE=${SP_ROOTFS_CACHE:-/var/cache/synapse-profiler-test}
sp_cached_rootfs() {
  local name=$1 check=$2; shift 2
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap not installed (scripts/setup.sh installs it)" >&2; return 3; }
  [[ $(id -u) -eq 0 ]] || { echo "building a root filesystem needs root" >&2; return 3; }
  local key dir tmp start
  key=$(printf '%s\n' "$(uname -m)" "$@" | sha256sum | cut -c1-16)
  dir=$SP_ROOTFS_CACHE/$name-$key
  SP_ROOTFS_BUILT=0
  mkdir -p "$SP_ROOTFS_CACHE"
  (
    flock -w 900 9 || { echo "timed out waiting for another build of $dir" >&2; exit 1; }
    [[ -d $dir ]] && exit 0
    rm -rf "$SP_ROOTFS_CACHE/.build-$key".*  # left by a build that was killed (the lock says none is running)
    tmp=$(mktemp -d "$SP_ROOTFS_CACHE/.build-$key.XXXXXX")
    start=$(date +%s)
    if ! timeout 900 mmdebstrap --quiet "$@" "$tmp/root" </dev/null >"$tmp/log" 2>&1; then
      echo "mmdebstrap $* failed:" >&2
      tail -n 20 "$tmp/log" >&2
      rm -rf "$tmp"
      exit 1
    fi
    if ! "$check" "$tmp/root" >"$tmp/check" 2>&1; then
      echo "the new root filesystem $name does not pass its check:" >&2
      cat "$tmp/check" >&2
      rm -rf "$tmp"
      exit 1
    fi
    mv "$tmp/root" "$dir"
    rm -rf "$tmp"
    echo "built $dir in $(($(date +%s) - start)) s" >&2
    exit 10
  ) 9>"$SP_ROOTFS_CACHE/.lock" || {
    local rc=$?
    [[ $rc -eq 10 ]] || return "$rc"
    SP_ROOTFS_BUILT=1
  }
  SP_ROOTFS=$dir
}

# sp_check_symbols_kept FILE: FILE has lost its debug information but kept its symbol table, where doctor's uprobe
# self-check finds the function it attaches to (a plain strip drops it). Says what is wrong otherwise.
sp_check_symbols_kept() {
  local sections
  sections=$(readelf -SW "$1") || return 1
  grep -q ' \.symtab ' <<<"$sections" || { echo "$1 has no symbol table (stripped with more than --strip-debug?)" >&2; return 1; }
  ! grep -q ' \.debug_info ' <<<"$sections" || { echo "$1 still carries debug information" >&2; return 1; }
}

# sp_doctor_alone PROC_DIR COMMAND...: runs `COMMAND doctor` in a PID namespace of its own with a fresh /proc mounted
# at PROC_DIR (the /proc COMMAND will see), as in a container without hostPID: it finds no process of the host, so its
# verdict is about the binary, the kernel and the privileges only. Prints its report; fails when the uprobe self-check
# (attach + fire on a function of the binary itself) did not pass or doctor did not finish (status above 1).
sp_doctor_alone() {
  local proc=$1 report status=0; shift
  report=$(unshare --pid --fork --mount-proc="$proc" "$@" doctor 2>&1) || status=$?
  echo "$report"
  grep -qF '[ok  ] BPF hook uprobe (attach + fire)' <<<"$report" \
    || { echo "doctor's uprobe self-check did not pass" >&2; return 1; }
  [[ $status -le 1 ]] || { echo "doctor ended with status $status" >&2; return 1; }
  SP_DOCTOR_STATUS=$status
}
