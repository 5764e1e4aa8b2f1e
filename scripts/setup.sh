#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the demo need. Idempotent: packages already present are
# not reinstalled and apt's package lists are refreshed only when something is missing. Nothing is fetched from
# anywhere but Debian's archive.
#   scripts/setup.sh               everything: build, tests, demo
#   scripts/setup.sh --build-only  only what building the binary needs (the container image's build stage)
set -euo pipefail

BUILD_PACKAGES=(
  cmake make g++ clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
  libboost-program-options-dev libfmt-dev libyaml-cpp-dev prometheus-cpp-dev libmicrohttpd-dev libcurl4-openssl-dev
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  libgtest-dev libgmock-dev googletest libbenchmark-dev nlohmann-json3-dev
  # libFuzzer and the sanitizer runtimes for clang (scripts/fuzz.sh)
  libclang-rt-14-dev
  # tests and the demo workload (Debian's python3.11 has the USDT GC probes; PostgreSQL 15 has its USDT probes)
  python3.11 python3-psycopg2 python3-prometheus-client python3-yaml python3.11-dev python3.11-dbg
  postgresql postgresql-client curl jq procps iproute2 util-linux binutils
  # the simulated pod of the deployment tests (its own Debian root filesystem)
  mmdebstrap
  # the kernel matrix (scripts/kernel_matrix.sh): Debian's kernels booted under qemu
  qemu-system-x86
  # record: report.html rendered in a real browser, screenshot checked
  chromium python3-pil
)
case ${1:-} in
  --build-only) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
  "") ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
