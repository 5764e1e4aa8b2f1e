#!/usr/bin/env bash
# Builds (once) the small Debian root filesystem of the simulated pod used by the deployment tests and prints its
# path: bookworm's python3.11, libpq5 and what the test workload imports (psycopg2, yaml, prometheus_client), as
# files of its own, different from the host's. Extracted with mmdebstrap (--variant=extract: no maintainer scripts),
# cached under /var/cache/synapse-profiler-test/ keyed by everything that goes into it (scripts/lib/common.sh's
# sp_cached_rootfs), so a change of the package list makes a new one. Measured here: about 40 s uncached (network
# bound), nothing when cached.
#   scripts/sim_pod_rootfs.sh          build if needed, print the path
#   scripts/sim_pod_rootfs.sh --clean  remove every cached root filesystem of the simulated pod
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

PACKAGES=(python3.11 libpq5 python3-psycopg2 python3-yaml python3-prometheus-client)

if [[ ${1:-} == --clean ]]; then
  rm -rf "$SP_ROOTFS_CACHE"/rootfs-*
  exit 0
fi
# Sanity check of a new tree: the interpreter runs in it and finds what the workload imports.
workload_imports() { chroot "$1" /usr/bin/python3.11 -c 'import psycopg2, yaml, prometheus_client'; }
sp_cached_rootfs rootfs workload_imports --variant=extract --include="$(IFS=,; echo "${PACKAGES[*]}")" bookworm
echo "$SP_ROOTFS"
