#!/bin/bash
# Regenerates the fake /proc trees used by tests/unit/discovery_test.cpp. Run it after editing; the output is
# checked in (cmdline and environ need NUL bytes, which is why they are generated rather than hand-written).
#
# Layout: <scenario>/<pid>/{cmdline,stat,status,environ,maps,exe,cwd,root/,fd/,net/tcp,net/tcp6}. root/ stands for
# the target's root file system (/proc/PID/root); exe and cwd are symlinks whose targets are paths inside that root
# and usually dangle on the host, as in a real container.
set -euo pipefail
cd "$(dirname "$0")"

SCENARIOS=(baremetal docker sidecar relative broken)
rm -rf "${SCENARIOS[@]}"

TCP_HEADER='  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode'

# proc DIR PID PPID START COMM NSPID...: the files every process has.
proc() {
  local dir=$1 pid=$2 ppid=$3 start=$4 comm=$5
  shift 5
  mkdir -p "$dir/$pid/fd" "$dir/$pid/net" "$dir/$pid/root"
  printf '%s (%s) S %s %s %s 0 -1 4194560 100 0 0 0 10 5 0 0 20 0 4 0 %s 123456789 2000 18446744073709551615\n' \
    "$pid" "$comm" "$ppid" "$ppid" "$ppid" "$start" >"$dir/$pid/stat"
  local nspid
  nspid=$(printf '\t%s' "${@:-$pid}")
  printf 'Name:\t%s\nState:\tS (sleeping)\nTgid:\t%s\nNgid:\t0\nPid:\t%s\nPPid:\t%s\nNSpid:%s\nNSsid:%s\n' \
    "$comm" "$pid" "$pid" "$ppid" "$nspid" "$nspid" >"$dir/$pid/status"
  : >"$dir/$pid/environ"
  : >"$dir/$pid/maps"
  : >"$dir/$pid/cmdline"
  echo "$TCP_HEADER" >"$dir/$pid/net/tcp"
  echo "$TCP_HEADER" >"$dir/$pid/net/tcp6"
}

# cmdline DIR PID ARG...: NUL-separated, NUL-terminated like the kernel writes it.
cmdline() {
  local dir=$1 pid=$2
  shift 2
  printf '%s\0' "$@" >"$dir/$pid/cmdline"
}

# environ DIR PID VAR=VALUE...
environ() {
  local dir=$1 pid=$2
  shift 2
  printf '%s\0' "$@" >"$dir/$pid/environ"
}

# listen DIR PID TABLE HEXADDR PORT INODE: a LISTEN socket (st 0A) owned by the process (fd 10+n -> socket:[INODE]).
listen() {
  local dir=$1 pid=$2 table=$3 addr=$4 port=$5 inode=$6
  local n
  n=$(find "$dir/$pid/fd" -mindepth 1 | wc -l)
  ln -s "socket:[$inode]" "$dir/$pid/fd/$((10 + n))"
  printf '   %d: %s:%04X 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 %s 1 0000000000000000 100 0 0 10 0\n' \
    "$n" "$addr" "$port" "$inode" >>"$dir/$pid/net/$table"
}

# maps DIR PID PATH...: one r--p and one r-xp mapping per file, in address order, like the loader makes them.
maps() {
  local dir=$1 pid=$2
  shift 2
  local base=$((0x7f0000000000)) path
  for path in "$@"; do
    printf '%x-%x r--p 00000000 fe:01 %d                %s\n' $base $((base + 0x1000)) $((base % 99991)) "$path"
    printf '%x-%x r-xp 00001000 fe:01 %d                %s\n' $((base + 0x1000)) $((base + 0x9000)) $((base % 99991)) "$path"
    base=$((base + 0x100000))
  done >>"$dir/$pid/maps"
  printf '%x-%x rw-p 00000000 00:00 0                          [heap]\n' $((0x5600000000)) $((0x5600021000)) >>"$dir/$pid/maps"
}

# file PATH CONTENT: a config file inside some root.
file() {
  mkdir -p "$(dirname "$1")"
  printf '%s' "$2" >"$1"
}

#############################################################################################################
# baremetal: Debian package layout, main + 2 workers, /etc/matrix-synapse/{homeserver.yaml,conf.d/,workers/},
# metrics listeners whose ports the processes own; PostgreSQL postmaster + backends; processes to ignore.
S=baremetal
VENV=/opt/venvs/matrix-synapse
HS_YAML='server_name: "example.org"
pid_file: /var/run/matrix-synapse.pid
enable_metrics: false
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    bind_addresses: ["::1", "127.0.0.1"]
    resources:
      - names: [client, federation]
  - port: 9000
    type: metrics
    bind_addresses: ["127.0.0.1"]
'
CONF_D_DB='database:
  name: psycopg2
  args:
    user: synapse
    password: "hunter2-SECRET-db-password"
    database: synapse
    host: 127.0.0.1
macaroon_secret_key: "SECRET-macaroon-key"
'
SYSLIBS=(/usr/lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0
  /usr/lib/x86_64-linux-gnu/libpq.so.5.15 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
for pid in 1000 1100 1200; do
  proc $S $pid 1 $((pid * 10)) python
  R=$S/$pid/root/etc/matrix-synapse
  file $R/homeserver.yaml "$HS_YAML"
  file $R/conf.d/00-database.yaml "$CONF_D_DB"
  file $R/conf.d/50-metrics.yaml $'enable_metrics: true\n'
  file $R/conf.d/README $'worker_name: not-a-yaml-suffix\n'
  mkdir -p $R/conf.d/99-directory.yaml && file $R/conf.d/99-directory.yaml/inner.yaml $'worker_name: from_subdirectory\n'
  ln -s $VENV/bin/python3.11 $S/$pid/exe
  ln -s /var/lib/matrix-synapse $S/$pid/cwd
  maps $S $pid $VENV/bin/python3.11 "${SYSLIBS[@]}"
done
cmdline $S 1000 $VENV/bin/python -m synapse.app.homeserver --config-path=/etc/matrix-synapse/homeserver.yaml \
  --config-path=/etc/matrix-synapse/conf.d/ --generate-keys-if-missing
listen $S 1000 tcp 0100007F 9000 5001
listen $S 1000 tcp 0100007F 8008 5002

# comm with spaces and parentheses: stat must be split after the LAST ')'.
proc $S 1100 1 11000 'python (x) y' 4242 1100
cmdline $S 1100 $VENV/bin/python -u -X dev -B -m synapse.app.generic_worker -c /etc/matrix-synapse/homeserver.yaml \
  -c/etc/matrix-synapse/conf.d --config-path /etc/matrix-synapse/workers/synchrotron1.yaml
file $S/1100/root/etc/matrix-synapse/workers/synchrotron1.yaml 'worker_app: synapse.app.generic_worker
worker_name: synchrotron1
worker_listeners:
  - type: http
    port: 8083
    resources:
      - names: [client]
  - type: http
    port: 9101
    bind_addresses: ["::"]
    resources:
      - names: [metrics]
'
listen $S 1100 tcp6 00000000000000000000000000000000 9101 6001
listen $S 1100 tcp6 00000000000000000000000000000000 8083 6002
# Another process's socket on the same port in the table (net/tcp lists the whole namespace): not ours.
printf '   9: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 5001 1 0\n' >>$S/1100/net/tcp

# Console script run by its shebang interpreter, old-style app name.
cmdline $S 1200 /usr/bin/python3 $VENV/bin/synapse_worker --config-path=/etc/matrix-synapse/homeserver.yaml \
  --config-path=/etc/matrix-synapse/conf.d --config-path=/etc/matrix-synapse/workers/federation_sender1.yaml
file $S/1200/root/etc/matrix-synapse/workers/federation_sender1.yaml 'worker_app: synapse.app.federation_sender
worker_name: federation_sender1
worker_listeners:
  - type: metrics
    port: 9102
    bind_address: "::1"
'
listen $S 1200 tcp6 00000000000000000000000001000000 9102 7001

# Not Synapse.
proc $S 2 0 5 kthreadd
proc $S 1300 1 13000 python3
cmdline $S 1300 /usr/bin/python3 -m http.server 8000
proc $S 1301 1 13010 grep
cmdline $S 1301 grep synapse.app.homeserver
proc $S 1302 1 13020 sh
cmdline $S 1302 sh -c "python -m synapse.app.homeserver -c /etc/matrix-synapse/homeserver.yaml"
proc $S 1303 1 13030 python3
cmdline $S 1303 python3 -m synapse.something_else -c /etc/matrix-synapse/homeserver.yaml
proc $S 1304 1 13040 python3
cmdline $S 1304 python3 -c "import synapse.app.homeserver" -m synapse.app.homeserver
proc $S 1305 1 13050 python3
cmdline $S 1305 python3 /usr/local/bin/not_synapse -m synapse.app.homeserver
proc $S 1306 1 13060 python3
cmdline $S 1306 python3 -m synapse.app._base

# PostgreSQL 15: postmaster (parent is systemd) and backends whose titles overwrite argv with spaces.
PG=/usr/lib/postgresql/15/bin/postgres
proc $S 500 1 5000 postgres
cmdline $S 500 $PG -D /var/lib/postgresql/15/main -c config_file=/etc/postgresql/15/main/postgresql.conf
ln -s $PG $S/500/exe
proc $S 510 500 5100 postgres
# No exe link: as for a non-root agent (EACCES); the backend inherits the postmaster's binary.
printf 'postgres: 15/main: synapse synapse 127.0.0.1(45678) idle\0\0\0\0' >$S/510/cmdline
proc $S 511 500 5110 postgres
printf 'postgres: 15/main: checkpointer    ' >$S/511/cmdline
ln -s $PG $S/511/exe

#############################################################################################################
# docker: the official image in worker mode. supervisord starts everything with SUPERVISOR_PROCESS_NAME set;
# configs in /data and /conf/workers; python is /usr/local/bin/python3.11 with no libpython; psycopg2-binary's
# bundled libpq. PID directories are host PIDs; NSpid adds the container's.
S=docker
PYBIN=/usr/local/bin/python3.11
BINLIBS=(/usr/lib/x86_64-linux-gnu/libc.so.6
  /usr/local/lib/python3.11/site-packages/psycopg2/_psycopg.cpython-311-x86_64-linux-gnu.so
  /usr/local/lib/python3.11/site-packages/psycopg2_binary.libs/libpq-e2e0e5c6.so.5.16)
proc $S 4001 3990 40010 supervisord 4001 1
cmdline $S 4001 /usr/local/bin/python /usr/local/bin/supervisord -c /etc/supervisor/supervisord.conf
for spec in 4020:20:synapse_main 4021:21:synapse_event_persister1 4022:22:synapse_background_worker1; do
  IFS=: read -r pid nspid name <<<"$spec"
  proc $S $pid 4001 $((pid * 10)) python $pid $nspid
  environ $S $pid PATH=/usr/local/bin:/usr/bin SUPERVISOR_ENABLED=1 "SUPERVISOR_PROCESS_NAME=$name" \
    SUPERVISOR_GROUP_NAME=$name SYNAPSE_SERVER_NAME=example.org
  file $S/$pid/root/data/homeserver.yaml 'server_name: example.org
enable_metrics: true
listeners:
  - port: 8080
    type: http
    resources:
      - names: [client, federation]
  - port: 19090
    type: metrics
database:
  name: psycopg2
  args: {password: "hunter2-SECRET-db-password"}
'
  file $S/$pid/root/conf/workers/shared.yaml $'redis:\n  enabled: true\n'
  ln -s / $S/$pid/cwd
  maps $S $pid $PYBIN "${BINLIBS[@]}"
done
ln -s "$PYBIN (deleted)" $S/4020/exe
cmdline $S 4020 /usr/local/bin/python -m synapse.app.homeserver --config-path=/data/homeserver.yaml \
  --config-path=/conf/workers/shared.yaml
listen $S 4020 tcp 00000000 19090 9001
# 4021 has no exe link (unreadable): python_path comes from the first executable mapping.
cmdline $S 4021 $PYBIN -m synapse.app.generic_worker --config-path=/data/homeserver.yaml \
  --config-path=/conf/workers/shared.yaml --config-path=/conf/workers/event_persister1.yaml
file $S/4021/root/conf/workers/event_persister1.yaml 'worker_app: synapse.app.generic_worker
worker_name: event_persister1
worker_listeners:
  - type: http
    port: 8034
    resources: [{names: [replication]}]
  - type: metrics
    port: 19091
'
listen $S 4021 tcp 00000000 19091 9101
ln -s $PYBIN $S/4022/exe
cmdline $S 4022 $PYBIN -m synapse.app.generic_worker --config-path=/data/homeserver.yaml \
  --config-path=/conf/workers/shared.yaml --config-path=/conf/workers/background_worker1.yaml
# Neither worker_name nor worker_app: the supervisor's name is the hint. Its metrics socket is not open (yet).
file $S/4022/root/conf/workers/background_worker1.yaml 'worker_listeners:
  - type: metrics
    port: 19092
'

#############################################################################################################
# sidecar: a container sharing the pod's PID namespace; the user pins the PID and names the worker.
S=sidecar
proc $S 7 1 700 python
cmdline $S 7 /usr/local/bin/python -m synapse.app.generic_worker --config-path /config/worker.yaml
file $S/7/root/config/worker.yaml 'worker_app: synapse.app.generic_worker
worker_name: from_config
enable_metrics: true
worker_listeners:
  - {type: metrics, port: 9093}
'
ln -s /usr/local/bin/python3.12 $S/7/exe
maps $S 7 /usr/local/bin/python3.12 /usr/local/lib/libpython3.12.so.1.0
listen $S 7 tcp 00000000 9093 7777
# A wrapper we do not recognise as Synapse.
proc $S 9 1 900 twistd
cmdline $S 9 /usr/local/bin/twistd -n --pidfile= synapse
ln -s /usr/local/bin/python3.12 $S/9/exe
# Another Synapse process that is not pinned.
proc $S 11 1 1100 python
cmdline $S 11 /usr/local/bin/python -m synapse.app.homeserver -c /config/homeserver.yaml

#############################################################################################################
# relative: config paths relative to the target's cwd, config directories, symlinks inside the root,
# later files overriding earlier top-level keys.
S=relative
proc $S 300 1 3000 python3.12
cmdline $S 300 /usr/bin/python3.12 -B -m synapse.app.homeserver -c homeserver.yaml -c ./conf.d/ \
  --config-path=../shared/extra.yaml
ln -s /srv/synapse $S/300/cwd
R=$S/300/root/srv
file $R/synapse/homeserver.yaml 'server_name: relative.example
enable_metrics: true
worker_name: first_name
listeners:
  - {type: metrics, port: 9000}
'
file $R/synapse/conf.d/10-b.yaml $'enable_metrics: true\nworker_name: from_10_b\n'
file $R/synapse/conf.d/02-a.yaml $'enable_metrics: false\nworker_name: from_02_a\n'
file $R/synapse/conf.d/notes.txt $'worker_name: from_txt\n'
mkdir -p $R/synapse/conf.d/sub.yaml && file $R/synapse/conf.d/sub.yaml/inner.yaml $'worker_name: from_subdirectory\n'
# An absolute symlink inside the target's root resolves inside that root.
ln -s /srv/shared/linked.yaml $R/synapse/conf.d/20-link.yaml
file $R/shared/linked.yaml $'worker_name: from_link\n'
file $R/shared/extra.yaml 'listeners:
  - type: http
    port: 9200
    bind_addresses: ["192.0.2.7"]
    resources: [{names: [client, metrics]}]
'
listen $S 300 tcp 070200C0 9200 3001

#############################################################################################################
# broken: missing, malformed, oversized and escaping config files; hostile cmdlines; garbage stat; a process that
# exits between listing and reading.
S=broken
proc $S 400 1 4000 python3
cmdline $S 400 python3 -m synapse.app.homeserver -c /etc/synapse/homeserver.yaml -c /etc/synapse/missing.yaml \
  -c /etc/synapse/malformed.yaml -c /etc/synapse/list.yaml -c /etc/synapse/empty.yaml -c /etc/synapse/huge.yaml \
  -c /etc/synapse/evil.yaml -c /etc/synapse/escape.yaml -c /dev/null -c /etc/synapse/late.yaml
R=$S/400/root/etc/synapse
file $R/homeserver.yaml 'enable_metrics: true
worker_name: main_from_config
registration_shared_secret: "SECRET-registration"
listeners:
  - {type: metrics, port: 9000}
database:
  args: {password: "hunter2-SECRET-db-password"}
'
# Malformed on purpose; the error must not quote the secret.
file $R/malformed.yaml 'database:
  args: {password: "hunter2-SECRET-malformed", [
worker_name: from_malformed
'
file $R/list.yaml $'- just\n- a list\n'
file $R/empty.yaml ''
{
  echo "worker_name: from_huge"
  for i in $(seq 1 1200); do echo "# padding line $i to push the file past the test's size cap"; done
} >$R/huge.yaml
ln -s /etc/passwd $R/evil.yaml
ln -s ../../../../../../../../../../etc/hostname $R/escape.yaml
file $R/late.yaml $'worker_app: synapse.app.homeserver_late\n'
ln -s /usr/bin/python3.11 $S/400/exe

# A worker whose only config is missing: still found, named after its app. cmdline without a trailing NUL.
proc $S 401 1 4010 python3
printf 'python3\0-m\0synapse.app.generic_worker\0-c\0/nope.yaml' >$S/401/cmdline

# A Synapse worker whose metrics port cannot be confirmed because fd/ is unreadable (here: absent).
proc $S 407 1 4070 python3
cmdline $S 407 python3 -m synapse.app.generic_worker -c /w.yaml
file $S/407/root/w.yaml $'worker_name: no_fd_dir\nenable_metrics: true\nworker_listeners: [{type: metrics, port: 9300}]\n'
rmdir $S/407/fd

# Hostile cmdlines: options missing their values, non-UTF-8 bytes, an enormous argument.
proc $S 402 1 4020 python3
printf 'python3\0-m' >$S/402/cmdline
proc $S 403 1 4030 python3
printf 'python3\0-X' >$S/403/cmdline
proc $S 404 1 4040 python3
{
  printf '\xff\xfe\x01python\0-m\0synapse.app.homeserver\0'
  head -c 100000 /dev/zero | tr '\0' 'A'
  printf '\0\xc3\x28\0'
} >$S/404/cmdline
proc $S 406 1 4060 python3
printf 'python3\0-\xff\0-m\0\0\0\0' >$S/406/cmdline

# A Synapse cmdline with a garbage stat: a warning, no worker.
proc $S 405 1 4050 python3
cmdline $S 405 python3 -m synapse.app.homeserver
printf '405 (python3 S 1 1' >$S/405/stat

# Exited between the directory listing and the first read.
ln -s /nonexistent-exited-process $S/408

# git keeps no empty directories; a placeholder keeps fd/, root/ and the directory named like a config file.
# (In fd/ it is not a symlink, so discovery ignores it like any descriptor that is not a socket.)
find "${SCENARIOS[@]}" -type d -empty -exec touch {}/.keep \;
