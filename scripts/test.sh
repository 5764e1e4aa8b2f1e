#!/usr/bin/env bash
# Sets up the machine, builds with warnings as errors, starts a PostgreSQL cluster owned by this run (own data dir
# and port, torn down at the end) and runs the whole suite with ctest.
#   scripts/test.sh              everything (unit + integration; integration needs root for BPF)
#   scripts/test.sh --sanitize   also build with ASan+UBSan and run the unit tests under it
#   scripts/test.sh --fuzz       also run every libFuzzer target for a bounded time (scripts/fuzz.sh; SP_FUZZ_SECONDS
#                                each, default 45) on top of its corpus, under ASan+UBSan
#   scripts/test.sh -R REGEX     only tests matching REGEX (passed to ctest)
# SYNAPSE_PROFILER_REQUIRE_BPF=1 turns every skipped BPF test into a failure (CI sets it).
# It needs root (packages, a PostgreSQL cluster, the BPF tests): run from another user it starts itself again through
# sudo, keeping the SP_* and SYNAPSE_PROFILER_* variables.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

args=("$@")
sanitize=0
fuzz=0
ctest_args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --sanitize) sanitize=1 ;;
    --fuzz) fuzz=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done
sp_as_root "$0" "${args[@]}"

"$SP_ROOT/scripts/setup.sh"

build=${SP_BUILD_DIR:-$SP_ROOT/build}
sp_build "$build"

pgdir=$(mktemp -d /tmp/sp-test-pg.XXXXXX)
trap 'sp_pg_stop "$pgdir/pg"; rm -rf "$pgdir"' EXIT
sp_pg_start "$pgdir/pg"

status=0
(cd "$build" && ctest --output-on-failure --timeout 600 "${ctest_args[@]}") || status=$?

if [[ $sanitize -eq 1 ]]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  # Only the unit tests run under the sanitizers: build only them.
  SP_BUILD_TARGET=sp_unit_all sp_build "$SP_ROOT/build-asan" -DSP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  (cd "$SP_ROOT/build-asan" && ctest --output-on-failure -L unit) || status=$?
fi
if [[ $fuzz -eq 1 ]]; then
  echo "== libFuzzer targets, bounded, under AddressSanitizer + UndefinedBehaviorSanitizer"
  "$SP_ROOT/scripts/fuzz.sh" --seconds "${SP_FUZZ_SECONDS:-45}" || status=$?
fi
exit $status
