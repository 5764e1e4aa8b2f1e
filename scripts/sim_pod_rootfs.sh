#!/usr/bin/env bash
# Builds (once) the small Debian root filesystem of the simulated pod used by the deployment tests and prints its
# path: bookworm's python3.11, libpq5 and what the test workload imports (psycopg2, yaml, prometheus_client), as
# files of its own, different from the host's. Extracted with mmdebstrap (--variant=extract: no maintainer scripts),
# cached under /var/cache/synapse-profiler-test/ keyed by everything that goes into it, so a change of the package
# list makes a new one. Measured here: about 40 s uncached (network bound), nothing when cached.
#   scripts/sim_pod_rootfs.sh          build if needed, print the path
#   scripts/sim_pod_rootfs.sh --clean  remove every cached root filesystem
set -euo pipefail

SUITE=bookworm
PACKAGES=(python3.11 libpq5 python3-psycopg2 python3-yaml python3-prometheus-client)
CACHE=${SP_ROOTFS_CACHE:-/var/cache/synapse-profiler-test}
FORMAT=1  # bump when the way the tree is made changes

if [[ ${1:-} == --clean ]]; then
  rm -rf "$CACHE"/rootfs-*
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap not installed (scripts/setup.sh installs it)" >&2; exit 3; }
[[ $(id -u) -eq 0 ]] || { echo "building the root filesystem needs root" >&2; exit 3; }

key=$(printf '%s\n' "$FORMAT" "$SUITE" "$(uname -m)" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
dir=$CACHE/rootfs-$key
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || { echo "timed out waiting for another build of $dir" >&2; exit 1; }

if [[ ! -x $dir/usr/bin/python3.11 ]]; then
  tmp=$(mktemp -d "$CACHE/.build-$key.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  if ! timeout 600 mmdebstrap --quiet --variant=extract --include="$(IFS=,; echo "${PACKAGES[*]}")" \
      "$SUITE" "$tmp/root" >"$tmp/log" 2>&1; then
    echo "mmdebstrap failed:" >&2
    tail -n 20 "$tmp/log" >&2
    exit 1
  fi
  # Sanity: the interpreter runs in the tree and finds what the workload imports.
  if ! chroot "$tmp/root" /usr/bin/python3.11 -c 'import psycopg2, yaml, prometheus_client' 2>"$tmp/check"; then
    echo "the new root filesystem does not work:" >&2
    cat "$tmp/check" >&2
    exit 1
  fi
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
  echo "built $dir in $(($(date +%s) - start)) s" >&2
fi
echo "$dir"
