#!/usr/bin/env bash
# The kernel matrix: boots Debian's own kernel packages under qemu (TCG: this machine has no /dev/kvm) with a root
# filesystem made by mmdebstrap (python3.11 + psycopg2, PostgreSQL 15, bpftool, the built binary, the integration
# test binary and the test workload) and runs on each kernel `synapse-profiler doctor` and a smoke made of selected
# integration tests (scripts/lib/kmatrix_guest.sh): GC pauses exact per worker and generation (USDT and the method
# table), libpq and server-side counts exact, desc attribution exact, block I/O of an O_DIRECT writer, `record`'s
# three files, a clean exit leaving no BPF program. Writes a table per kernel into docs/deploy.md ("Supported
# kernels") and the whole console of each run under BUILD/kernel_matrix/.
#
# Kernels: `6.1` (linux-image-6.1.0-*-cloud-amd64, Debian 12's stock), `6.12` (linux-image-6.12.*+deb12-cloud-amd64,
# its newer series), both the newest in the archive, extracted from the .deb into a cache (never installed on this
# machine), booted with an initramfs of busybox and the virtio modules they lack; and `control`, this machine's kernel:
# run natively (the same guest script, no qemu) when its image is not a file that qemu could boot.
#
#   scripts/kernel_matrix.sh                  all three, table written into docs/deploy.md
#   scripts/kernel_matrix.sh --kernels 6.1    only these (space or comma separated: 6.1 6.12 control)
#   scripts/kernel_matrix.sh --no-docs        do not touch docs/deploy.md
#   scripts/kernel_matrix.sh --filter GTEST   another --gtest_filter for the smoke
#   scripts/kernel_matrix.sh --keep           keep the work directory (image, initramfs)
# SP_BUILD_DIR: the build directory (default build/; the three binaries are built there). KMATRIX_TIMEOUT: seconds
# a guest may run (default 5400). KMATRIX_RESULTS: where the consoles and tables go (default BUILD/kernel_matrix).
# KMATRIX_TIME_SCALE: SP_TEST_TIME_SCALE in a guest, the factor the tests' timeouts are stretched by under emulation
# (default 20; the control runs unscaled). KMATRIX_SMP, KMATRIX_MEM: vCPUs (default 2) and MiB (default 4096) of a
# guest.
# Exit status: 0 every kernel passed, 1 one did not, 77 this machine cannot run it (not root, no mmdebstrap or qemu).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }
kernels="6.1 6.12 control" docs=1 keep=0
# The smoke. Each of these checks the agent against the workload's own truth (see the tests).
filter=$(IFS=:; a=(
  'GcAgentIT.TwoWorkersAtDifferentRatesEachGetOnlyTheirOwnPauses'
  'GcAgentIT.StrippedPythonWithoutUsdtUsesTheMethodTable'
  'LibpqAgentIT.TcpAndUnixSocketWorkersCountEveryQueryPerVerb'
  'LibpqAgentIT.ServerSideAccountsForEveryStatementOverTheWorkersLife'
  'DescAgentIT.PerDescCountsEqualTheWorkloadsOwnAndBareQueriesAreUnattributed'
  'BlockIoAgentIT.DirectIoIsChargedToTheWorkerWithItsOwnByteCounts'
  'RecordIT.TraceReportAndSummaryMatchTheWorkloadAndTheExporter'
  'DetachIT.*'
); echo "${a[*]}")
while [[ $# -gt 0 ]]; do
  case $1 in
    --kernels) kernels=${2//,/ }; shift ;;
    --no-docs) docs=0 ;;
    --filter) filter=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) -eq 0 ]] || { echo "kernel_matrix: needs root (mmdebstrap, BPF)"; exit 77; }
command -v mmdebstrap >/dev/null || { echo "kernel_matrix: mmdebstrap not installed (scripts/setup.sh)"; exit 77; }
command -v qemu-system-x86_64 >/dev/null || { echo "kernel_matrix: qemu-system-x86_64 not installed (scripts/setup.sh)"; exit 77; }
fail() { echo "kernel_matrix: $*" >&2; exit 1; }

build=${SP_BUILD_DIR:-$SP_ROOT/build}
timeout_s=${KMATRIX_TIMEOUT:-5400}
# The tests' timeouts and the workload's start gate are sized for a native run; emulated without KVM, with other work
# on the host, the agent's start, BPF loads (the verifier runs emulated) and attaches take 10 to 20 times as long.
time_scale=${KMATRIX_TIME_SCALE:-20}
work=$(mktemp -d /var/tmp/sp-kmatrix.XXXXXX)
cleanup() { if ((keep)); then echo "kept $work"; else rm -rf --one-file-system "$work"; fi; }
trap cleanup EXIT
results=${KMATRIX_RESULTS:-$build/kernel_matrix}
mkdir -p "$results"

# --- the binaries, at the paths compiled into the test binary (SP_BINARY, SP_EMBED_PYTHON, SP_WORKLOAD_DIR).
for target in synapse-profiler sp_integration_tests sp_embed_python; do
  SP_BUILD_TARGET=$target sp_build "$build" >/dev/null || fail "building $target failed"
done
binary=$build/synapse-profiler tests=$build/tests/sp_integration_tests embed=$build/tests/embed/python3.11
for f in "$binary" "$tests" "$embed"; do [[ -x $f ]] || fail "$f was not built"; done

# --- the root filesystem: what the smoke runs, plus the Debian package of every library the binaries load.
lib_packages() {
  ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || echo "?: $lib"
  done | cut -d: -f1 | sort -u
}
mapfile -t libs < <(lib_packages "$binary" "$tests" "$embed")
for p in "${libs[@]}"; do [[ $p != '?' ]] || fail "a library of the binaries belongs to no Debian package"; done
# kmod: the kernel loads modules on demand through /sbin/modprobe, as on any Debian host (the cloud kernels build
# unix_diag, which matches PostgreSQL backends on Unix sockets to workers, as a module).
PACKAGES=(postgresql-15 python3.11 libpython3.11 python3-psycopg2 python3-yaml python3-prometheus-client bpftool
          binutils iproute2 procps curl util-linux kmod "${libs[@]}")
guest_works() {
  chroot "$1" /usr/bin/python3.11 -c 'import psycopg2, yaml, prometheus_client' \
    && [[ -x $1/usr/lib/postgresql/15/bin/postgres ]] && chroot "$1" bpftool version >/dev/null && chroot "$1" test -x /sbin/modprobe
}
start=$SECONDS
sp_cached_rootfs kmatrix guest_works --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" bookworm \
  || fail "the root filesystem could not be made"
rootfs=$SP_ROOTFS
echo "root filesystem: $rootfs ($((SECONDS - start)) s)"

# --- a kernel package of the archive, newest of its series, extracted into the cache. Sets kdir, kver.
kcache=$SP_ROOTFS_CACHE/kernels
mkdir -p "$kcache"
fetch_deb() {  # PACKAGE: downloads it into the cache once, prints the path
  local pkg=$1 deb
  deb=$(ls "$kcache/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
  if [[ -z $deb ]]; then
    (cd "$kcache" && apt-get download "$pkg" >/dev/null 2>&1) || fail "apt-get download $pkg failed"
    deb=$(ls "$kcache/${pkg}_"*.deb | head -n 1)
  fi
  echo "$deb"
}
kernel_package() {  # SERIES
  local pattern
  case $1 in
    6.1) pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
    6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
    *) fail "unknown kernel $1" ;;
  esac
  apt-cache search --names-only "$pattern" | cut -d' ' -f1 | sort -V | tail -n 1
}
extract_kernel() {  # SERIES
  local pkg deb
  pkg=$(kernel_package "$1")
  [[ -n $pkg ]] || fail "no package for kernel $1 in apt's lists (apt-get update?)"
  deb=$(fetch_deb "$pkg")
  kdir=$kcache/$(basename "$deb" .deb)
  if [[ ! -d $kdir ]]; then
    rm -rf "$kdir.tmp"
    dpkg-deb -x "$deb" "$kdir.tmp"
    mv "$kdir.tmp" "$kdir"
  fi
  kver=$(ls "$kdir/lib/modules")
  echo "kernel $1: $pkg ($kver)"
}

# --- an initramfs: busybox, the modules the kernel needs for a virtio disk (those not built in), in load order.
busybox_deb=$(fetch_deb busybox-static)
mkdir -p "$work/busybox"
dpkg-deb -x "$busybox_deb" "$work/busybox"
bb=$work/busybox/bin/busybox
module_file() { find "$kdir/lib/modules/$kver/kernel" -name "$1.ko*" | head -n 1; }
module_deps() {  # the `depends=` of a module's .modinfo
  local f=$1
  case $f in
    *.xz) xz -dc "$f" ;;
    *.zst) zstd -dc "$f" ;;
    *) cat "$f" ;;
  esac | strings -a | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '
}
declare -A loaded=()
load_order=()
add_module() {
  local name=$1 f dep
  [[ -n ${loaded[$name]:-} ]] && return 0
  loaded[$name]=1
  f=$(module_file "$name")
  [[ -n $f ]] || return 0  # built in
  for dep in $(module_deps "$f"); do add_module "$dep"; done
  load_order+=("$f")
}
make_initramfs() {  # OUT
  local out=$1 dir=$work/initramfs-$kver f name m
  loaded=() load_order=()
  for m in virtio_pci virtio_blk; do add_module "$m"; done
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/lib" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/newroot"
  cp "$bb" "$dir/bin/busybox"
  : >"$dir/modules"
  for f in "${load_order[@]}"; do
    name=$(basename "$f"); name=${name%%.ko*}
    case $f in
      *.xz) xz -dc "$f" >"$dir/lib/$name.ko" ;;
      *.zst) zstd -dc "$f" >"$dir/lib/$name.ko" ;;
      *) cp "$f" "$dir/lib/$name.ko" ;;
    esac
    echo "$name" >>"$dir/modules"
  done
  cat >"$dir/init" <<'EOF'
#!/bin/busybox sh
b=/bin/busybox
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev
die() { echo "kmatrix initramfs: $*"; echo o >/proc/sysrq-trigger; $b sleep 60; }
for m in $($b cat /modules); do $b insmod /lib/$m.ko || die "insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do $b sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || die "no /dev/vda"
$b mount -t ext4 -o ro /dev/vda /newroot || die "cannot mount /dev/vda"
$b mount --move /proc /newroot/proc
$b mount --move /sys /newroot/sys
$b mount --move /dev /newroot/dev
exec $b switch_root /newroot /kmatrix/kmatrix_guest.sh --guest
EOF
  chmod +x "$dir/init"
  (cd "$dir" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -1 >"$out"
  echo "  initramfs: ${#load_order[@]} modules ($(tr '\n' ' ' <"$dir/modules"))"
}

# --- the disk image: the root filesystem, the binaries and the workload at their build paths, every kernel's
# modules, the guest script and its settings. Shared by the guests (qemu's snapshot=on: writes never reach it).
image=$work/root.img
make_image() {  # SERIES...
  local tree=$work/tree s
  cp -a "$rootfs" "$tree"
  for s in "$@"; do
    extract_kernel "$s"
    mkdir -p "$tree/lib/modules"
    cp -a "$kdir/lib/modules/$kver" "$tree/lib/modules/"
    # What the package's postinst would do: modules.dep and friends, for modprobe.
    chroot "$tree" /sbin/depmod "$kver" || fail "depmod for $kver failed"
  done
  mkdir -p "$tree$build/tests/embed" "$tree$SP_ROOT/tests" "$tree/kmatrix"
  cp -a "$binary" "$tree$binary"
  cp -a "$tests" "$tree$tests"
  cp -a "$embed" "$tree$embed"
  cp -a "$SP_ROOT/tests/workload" "$SP_ROOT/tests/data" "$tree$SP_ROOT/tests/"
  cp -a "$SP_ROOT/scripts/lib/kmatrix_guest.sh" "$SP_ROOT/scripts/lib/common.sh" "$tree/kmatrix/"
  {
    printf 'export KMATRIX_BINARY=%q KMATRIX_TESTS=%q KMATRIX_FILTER=%q\n' "$binary" "$tests" "$filter"
    printf 'export SP_PG_BIN=/usr/lib/postgresql/15/bin SP_TEST_TIME_SCALE=%q\n' "$time_scale"
  } >"$tree/kmatrix/env"
  # The Debian cluster made by postgresql-15's postinst is not used (the smoke starts its own).
  rm -f "$tree/etc/postgresql/15/main/start.conf" 2>/dev/null || true
  mke2fs -q -t ext4 -L kmatrix -d "$tree" "$image" 8G || fail "mke2fs failed"
  rm -rf --one-file-system "$tree"
}

# --- one run: prints nothing of its own; its console goes to $results/SERIES.console.
run_guest() {  # SERIES
  local series=$1 log=$results/$1.console status=0 t0=$SECONDS
  extract_kernel "$series" >/dev/null
  make_initramfs "$work/initramfs-$series.gz"
  echo "  booting $kver under qemu (TCG, ${KMATRIX_SMP:-2} vCPUs, ${KMATRIX_MEM:-4096} MiB), console in $log"
  # --foreground: qemu stays in this script's process group, so that stopping the script stops it too.
  # no_timer_check: under TCG on a busy host the kernel's check of the IO-APIC timer fails ("IO-APIC + timer doesn't
  # work!", a panic at boot on 6.1); the emulated timer is fine.
  nice -n 10 timeout --foreground "$timeout_s" qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max \
    -smp "${KMATRIX_SMP:-2}" -m "${KMATRIX_MEM:-4096}" -display none -monitor none -nic none -serial "file:$log" -no-reboot \
    -kernel "$kdir/boot/vmlinuz-$kver" -initrd "$work/initramfs-$series.gz" \
    -append "console=ttyS0 panic=-1 loglevel=4 sysrq_always_enabled=1 mitigations=off no_timer_check" \
    -drive "file=$image,if=virtio,format=raw,snapshot=on" </dev/null >"$work/qemu-$series.log" 2>&1 || status=$?
  [[ $status -eq 124 ]] && echo "KMATRIX error qemu timed out after $timeout_s s" >>"$log"
  [[ $status -ne 0 && $status -ne 124 ]] && echo "KMATRIX error qemu ended with status $status: $(tail -n 3 "$work/qemu-$series.log")" >>"$log"
  echo "KMATRIX wall_seconds $((SECONDS - t0))" >>"$log"
}
run_native() {
  local log=$results/control.console t0=$SECONDS
  echo "  this machine's kernel $(uname -r) is not a file qemu could boot (no /boot/vmlinuz-$(uname -r)): runs natively"
  KMATRIX_BINARY=$binary KMATRIX_TESTS=$tests KMATRIX_FILTER=$filter SP_PG_BIN=$SP_PG_BIN \
    bash "$SP_ROOT/scripts/lib/kmatrix_guest.sh" --native >"$log" 2>&1 || true
  echo "KMATRIX wall_seconds $((SECONDS - t0))" >>"$log"
}

guest_series=()
for k in $kernels; do [[ $k == control ]] || guest_series+=("$k"); done
if [[ ${#guest_series[@]} -gt 0 ]]; then
  start=$SECONDS
  make_image "${guest_series[@]}"
  echo "disk image made in $((SECONDS - start)) s"
fi
for k in $kernels; do
  echo "== $k"
  if [[ $k == control ]]; then
    if [[ -f /boot/vmlinuz-$(uname -r) ]]; then
      fail "booting this machine's own kernel image under qemu is not done yet: run --kernels 6.1,6.12"
    fi
    run_native
  else
    run_guest "$k"
  fi
  tr -d '\r' <"$results/$k.console" | grep '^KMATRIX ' >"$results/$k.results" || true
done

# --- the table.
verdict=0
python3 "$SP_ROOT/scripts/lib/kmatrix_table.py" "$results" $kernels >"$results/table.md" || verdict=$?
[[ $verdict -le 1 && -s $results/table.md ]] || fail "no table"
cat "$results/table.md"
if ((docs)); then
  python3 - "$SP_ROOT/docs/deploy.md" "$results/table.md" <<'EOF'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
begin, end = "<!-- kernel_matrix.sh: begin -->", "<!-- kernel_matrix.sh: end -->"
if begin not in text or end not in text:
    sys.exit(f"{path} has no {begin} ... {end} section")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + table + end + tail)
EOF
  echo "written into docs/deploy.md (Supported kernels)"
fi
exit "$verdict"
