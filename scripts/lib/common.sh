# Shared by scripts/*.sh: building and a throwaway PostgreSQL cluster owned by the calling script.
# shellcheck shell=bash

SP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SP_PG_BIN=${SP_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

sp_build() {  # sp_build BUILD_DIR [extra cmake args...]; SP_BUILD_TARGET limits the build to one target
  local dir=$1; shift
  cmake -S "$SP_ROOT" -B "$dir" -DSP_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" ${SP_BUILD_TARGET:+--target "$SP_BUILD_TARGET"}
}

sp_free_port() {
  local port
  for port in $(seq "${1:-55432}" "${2:-55999}"); do
    if ! ss -Htln "sport = :$port" | grep -q .; then echo "$port"; return 0; fi
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
