#!/usr/bin/env bash
# Bounded libFuzzer run of every fuzz target (tests/fuzz) on top of its regression corpus, under ASan + UBSan: builds
# them with clang (-DSP_FUZZ=ON, target sp_fuzz_all) in build-fuzz, then runs each for --seconds.
#   scripts/fuzz.sh [--seconds 45] [--build DIR]
# Exit 1 when any target crashes, leaks, trips a sanitizer or hangs: the input that did it is in DIR/artifacts/ (add
# it to tests/data/fuzz/<target>/ with the fix, so that the ctest regression run replays it forever). New inputs found
# on the way are kept in a scratch copy of the corpus, never written into the source tree.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

seconds=45
build=${SP_FUZZ_BUILD_DIR:-$SP_ROOT/build-fuzz}
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "--seconds takes a positive number" >&2; exit 2; }
               seconds=$2; shift ;;
    --build) build=${2:?--build takes a directory}; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v clang++ >/dev/null || { echo "clang++ not found (run scripts/setup.sh)" >&2; exit 1; }

SP_BUILD_TARGET=sp_fuzz_all sp_build "$build" -DSP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++

data=$SP_ROOT/tests/data
fuzz=$SP_ROOT/tests/fuzz
artifacts=$build/artifacts
mkdir -p "$artifacts"
scratch=$(mktemp -d /tmp/sp-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# name, dictionary (or empty), seed directories (read-only; the /proc fixture trees are read recursively).
targets=(
  "sql|$fuzz/sql.dict|$data/fuzz/sql"
  "prom|$fuzz/prom.dict|$data/fuzz/prom"
  "yaml||$data/fuzz/yaml $data/proc"
  "proc||$data/fuzz/proc $data/proc"
)
status=0
for t in "${targets[@]}"; do
  IFS='|' read -r name dict seeds <<<"$t"
  mkdir -p "$scratch/$name"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/$name-")
  [[ -n $dict ]] && args+=(-dict="$dict")
  echo "== fuzz $name for $seconds s (seeds: $seeds)"
  # shellcheck disable=SC2086  # the seed list splits into directories
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$build/tests/fuzz/sp_fuzz_$name" "${args[@]}" "$scratch/$name" $seeds >"$scratch/$name.log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$scratch/$name.log" | tr '\n' ' '
    echo
  else
    echo "fuzz $name FAILED:" >&2
    tail -n 60 "$scratch/$name.log" >&2
    ls "$artifacts" >&2
    status=1
  fi
done
exit $status
