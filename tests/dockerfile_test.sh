#!/usr/bin/env bash
# The container image's Dockerfile (top of the repository), checked without building it: two stages on Debian
# bookworm, the build stage uses the same set-up script and CMake, the runtime stage holds no compiler and installs a
# package for every shared library the binary in BUILD_DIR links (direct ones named explicitly; each library `ldd`
# lists is in a named package or in one they depend on, mapped with dpkg -S), the entry point is the copied binary
# and the exposed port is the binary's default, the image name is the one the k8s manifests use.
set -euo pipefail
build=${1:?usage: dockerfile_test.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/dockerfile.sh"
df=$root/Dockerfile
bin=$build/synapse-profiler
fail() { echo "Dockerfile: $*" >&2; exit 1; }
[[ -f $df ]] || fail "missing at $df"
[[ -x $bin ]] || fail "no binary at $bin (build the synapse-profiler target)"

instructions=$(sp_dockerfile_instructions "$df")
froms=$(grep -E '^FROM ' <<<"$instructions")
[[ $(wc -l <<<"$froms") -eq 2 ]] || fail "expected two stages: $froms"
[[ $(sed -n 1p <<<"$froms") == "FROM debian:bookworm AS build" ]] || fail "build stage: $(sed -n 1p <<<"$froms")"
runtime_from=$(sed -n 2p <<<"$froms")
[[ $runtime_from =~ ^FROM\ debian:bookworm(-slim)?\ AS\ runtime$ ]] || fail "runtime stage: $runtime_from"
build_stage=$(awk '/^FROM .* AS build$/{s=1} /^FROM .* AS runtime$/{s=0} s' <<<"$instructions")
runtime_stage=$(awk '/^FROM .* AS runtime$/{s=1} s' <<<"$instructions")
grep -qE '^RUN .*scripts/setup\.sh --build-only' <<<"$build_stage" || fail "build stage does not run scripts/setup.sh"
grep -qE '^RUN .*cmake -S \. -B /build .*cmake --build /build .*--target synapse-profiler' <<<"$build_stage" \
  || fail "build stage does not build with CMake"
# Stripping keeps the symbol table (doctor's uprobe self-check finds a function of the binary by name in .symtab): only
# debug-only forms of strip, never --strip-all/--strip-unneeded (strip's default is --strip-all).
while read -r cmd; do
  [[ $cmd =~ [[:space:]](-g|-S|-d|--strip-debug)([[:space:]]|$) ]] || fail "strips the symbol table: '$cmd' (use strip --strip-debug)"
  [[ $cmd =~ [[:space:]](-s|--strip-all|--strip-unneeded)([[:space:]]|$) ]] && fail "strips the symbol table: '$cmd'"
done < <(grep -oE '(^|[[:space:];&|])(llvm-)?strip [^;&|]*' <<<"$build_stage")
grep -qE 'objcopy [^;&|]*--strip-(all|unneeded)' <<<"$build_stage" && fail "objcopy strips the symbol table"
grep -qxF 'COPY --from=build /build/synapse-profiler /usr/bin/synapse-profiler' <<<"$runtime_stage" \
  || fail "runtime stage does not copy the binary from the build stage"
grep -qxF 'ENTRYPOINT ["/usr/bin/synapse-profiler"]' <<<"$runtime_stage" || fail "entry point is not the binary"
default_port=$("$bin" run --help | sed -n 's/.*--listen arg (=.*:\([0-9]*\)).*/\1/p')
[[ -n $default_port ]] || fail "cannot read the binary's default port"
grep -qxF "EXPOSE $default_port" <<<"$runtime_stage" || fail "EXPOSE is not the default port $default_port"
for image in $(grep -rhoE 'image: *[^ ]*synapse-profiler[^ ]*' "$root/k8s" | awk '{print $2}' | sort -u); do
  grep -qF -- "-t $image" "$df" || fail "k8s image $image is not the tag the Dockerfile documents"
done

# The runtime stage's packages: the words after `apt-get install` (options dropped) up to the next `&&`.
runtime_packages=$(grep -E '^RUN .*apt-get install' <<<"$runtime_stage" \
  | sed -e 's/.*apt-get install//' -e 's/&&.*//' | tr ' ' '\n' | grep -vE '^(-.*)?$' | sort -u)
[[ -n $runtime_packages ]] || fail "runtime stage installs no packages"
for tool in g++ gcc clang cmake make llvm; do
  grep -qx "$tool" <<<"$runtime_packages" && fail "runtime stage installs the build tool $tool"
done

# Every package the named ones pull in (Depends and Pre-Depends, all alternatives), from the installed dpkg database
# (read once).
declare -A depends_of=()
while IFS=$'\t' read -r name deps; do
  depends_of[$name]=$deps
done < <(dpkg-query -W -f='${Package}\t${Depends}, ${Pre-Depends}\n')
declare -A closure=()
queue=($runtime_packages)
while [[ ${#queue[@]} -gt 0 ]]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  [[ -n ${closure[$p]:-} ]] && continue
  closure[$p]=1
  [[ -v depends_of[$p] ]] || fail "$p is not a Debian package installed here"
  deps=${depends_of[$p]}
  for d in $(tr ',|' '\n\n' <<<"$deps" | sed -e 's/(.*)//' -e 's/:any//' | tr -d ' ' | sort -u); do
    [[ -z ${closure[$d]:-} ]] && queue+=("$d")
  done
done

# One dpkg -S for every library (it reads every package's file list, so once is much faster); the stragglers one by one.
declare -A owner=()
mapfile -t lib_paths < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
while IFS= read -r line; do
  [[ $line == *": "* ]] && owner[${line#*: }]=${line%%:*}
done < <(dpkg -S "${lib_paths[@]}" 2>/dev/null || true)

package_of() {  # the package owning a library path (/lib is /usr/lib on a merged-/usr system)
  local p=$1 out
  [[ -n ${owner[$p]:-} ]] && { echo "${owner[$p]}"; return 0; }
  for candidate in "$p" "$(realpath "$p")" "/usr$p" "${p#/usr}"; do
    out=$(dpkg -S "$candidate" 2>/dev/null | head -n 1) && [[ -n $out ]] && { echo "${out%%:*}"; return 0; }
  done
  return 1
}

needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[[ -n $needed ]] || fail "the binary links no shared library?"
checked=0
direct_packages=()
while read -r lib arrow path _; do
  [[ $arrow == "=>" && $path == /* ]] || continue
  pkg=$(package_of "$path") || fail "no package owns $path ($lib)"
  if grep -qxF "$lib" <<<"$needed"; then
    grep -qx "$pkg" <<<"$runtime_packages" || fail "$lib ($pkg) is linked directly but not installed by name"
    direct_packages+=("$pkg")
  else
    [[ -n ${closure[$pkg]:-} ]] || fail "$lib ($pkg) is not installed by any package of the runtime stage"
  fi
  checked=$((checked + 1))
done < <(ldd "$bin")
[[ $checked -ge $(wc -l <<<"$needed") ]] || fail "ldd resolved only $checked libraries"
# And nothing more: every package named in the runtime stage holds a library the binary links directly (a library
# dropped from the build must leave the image too).
for pkg in $runtime_packages; do
  printf '%s\n' "${direct_packages[@]}" | grep -qx "$pkg" || fail "the runtime stage installs $pkg, which no library of the binary needs"
done
echo "Dockerfile: 2 stages on bookworm; $checked libraries of the binary covered by:" $runtime_packages
