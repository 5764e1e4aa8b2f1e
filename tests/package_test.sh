#!/usr/bin/env bash
# The Debian package end to end: build it with CPack from BUILD_DIR, check what it contains, install it on this
# machine, run the installed binary (with the installed configuration, and its doctor), verify the systemd unit,
# remove it.
# Needs root (dpkg -i); exits 77 (skipped) otherwise.
set -euo pipefail
build=${1:?usage: package_test.sh BUILD_DIR}
source "$(dirname "$0")/../scripts/lib/common.sh"
[[ $(id -u) -eq 0 ]] || { echo "not root: dpkg -i needs it"; exit 77; }
if dpkg -s synapse-profiler >/dev/null 2>&1; then
  echo "synapse-profiler is already installed as a package here: not touching it"
  exit 77
fi
work=$(mktemp -d /tmp/sp-package.XXXXXX)
cleanup() {
  dpkg -P synapse-profiler >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cpack -G DEB -B "$work" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/synapse-profiler_*.deb)
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/synapse-profiler ./usr/lib/systemd/system/synapse-profiler.service \
         ./etc/synapse-profiler/synapse-profiler.conf; do
  grep -q " $f\$" <<<"$contents" || { echo "package lacks $f"; echo "$contents"; exit 1; }
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libbpf libfmt libyaml-cpp libcurl libboost-program-options libmicrohttpd zlib1g; do
  grep -q "$lib" <<<"$depends" || { echo "Depends lacks $lib: $depends"; exit 1; }
done
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/synapse-profiler/synapse-profiler.conf "$work/control/conffiles" || { echo "config is not a conffile"; exit 1; }

dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; exit 1; }
/usr/bin/synapse-profiler --version
# Stripped of debug information only: doctor's uprobe self-check (a uprobe on a function of the binary, found by name
# in its symbol table) passes with the installed binary.
sp_check_symbols_kept /usr/bin/synapse-profiler
sp_doctor_alone /proc /usr/bin/synapse-profiler
# The installed configuration is one the binary accepts (every line is a comment by default; one option set here).
/usr/bin/synapse-profiler workers --config /etc/synapse-profiler/synapse-profiler.conf >/dev/null
printf 'rescan-interval = 2s\n' >"$work/extra.conf"
/usr/bin/synapse-profiler workers --config "$work/extra.conf" >/dev/null
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /usr/lib/systemd/system/synapse-profiler.service
fi
grep -q '^CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH$' \
  /usr/lib/systemd/system/synapse-profiler.service
echo "package ok: $(basename "$deb")"
