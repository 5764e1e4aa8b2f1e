#!/usr/bin/env bash
# The container image built and run without Docker: carries out the Dockerfile's own instructions, stage by stage, in
# chroots of Debian root filesystems made by mmdebstrap as stand-ins for the base images (debian:SUITE = minbase,
# debian:SUITE-slim = minbase without documentation, man pages and translations), then checks the last stage as the
# image: the entry point's --version, no library missing (ldd), and `doctor` passing, its uprobe self-check included.
#
# What a RUN step gets, as under Docker: /bin/sh -c in the stage's WORKDIR, the stage's ARGs in its environment,
# network, the host's resolv.conf, /proc, /sys read-only, /dev. Differences: no layer cache (the base root
# filesystems are cached, and downloaded .deb files are kept between runs in a shared apt cache), the build context
# is the repository filtered by .dockerignore (patterns as Docker reads them, `!` exceptions unsupported), and only
# the instructions this Dockerfile uses are understood: anything else stops the script rather than being skipped.
#
#   scripts/image_build.sh           build and check (root; 2 to 5 minutes on 2 cores, see docs/deploy.md)
#   scripts/image_build.sh --keep    keep the work directory with every stage's tree (path printed at the end)
#   scripts/image_build.sh --clean   remove the cached base root filesystems and the apt cache
# Exit status: 0 the image builds and works, 1 it does not, 77 this machine cannot run the test (not root, no
# mmdebstrap).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/dockerfile.sh"

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }
keep=0
case ${1:-} in
  "") ;;
  --keep) keep=1 ;;
  --clean) rm -rf "$SP_ROOTFS_CACHE"/image-* "$SP_ROOTFS_CACHE/apt-archives"; exit 0 ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { echo "image_build: needs root (mmdebstrap, chroot, mount)"; exit 77; }
command -v mmdebstrap >/dev/null || { echo "image_build: mmdebstrap not installed (scripts/setup.sh installs it)"; exit 77; }

fail() { echo "image_build: $*" >&2; exit 1; }
dockerfile=$SP_ROOT/Dockerfile
[[ -f $dockerfile ]] || fail "no Dockerfile at $dockerfile"
apt_cache=$SP_ROOTFS_CACHE/apt-archives
mkdir -p "$apt_cache/partial"
work=$(mktemp -d /var/tmp/sp-image.XXXXXX)

# Mounts, innermost last; undone in reverse by unmount_all, also from the EXIT trap whatever failed.
mounted=()
mnt() {
  mount "$@"
  mounted+=("${*: -1}")
}
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount --lazy "${mounted[i]}" 2>/dev/null \
      || echo "image_build: could not unmount ${mounted[i]}" >&2
  done
  mounted=()
}
cleanup() {
  unmount_all
  # Never delete through a mount that is still there (/dev, /proc of the host).
  if findmnt -rn -o TARGET | grep -q "^$work/"; then
    echo "image_build: something is still mounted under $work; left in place" >&2
  elif ((keep)); then
    echo "kept $work"
  else
    rm -rf --one-file-system "$work" || echo "image_build: could not remove $work" >&2
  fi
}
trap cleanup EXIT

# What a container runtime provides to a RUN step (and to the checks of the image).
mount_runtime() {
  local root=$1
  mnt -t proc proc "$root/proc"
  mnt -t sysfs -o ro sysfs "$root/sys"
  mnt --bind /dev "$root/dev"
  mnt --bind /dev/pts "$root/dev/pts"
  [[ -e $root/etc/resolv.conf ]] || touch "$root/etc/resolv.conf"
  mnt --bind /etc/resolv.conf "$root/etc/resolv.conf"
}

# The base images, as mmdebstrap root filesystems cached by sp_cached_rootfs.
apt_works() { chroot "$1" apt-get --version >/dev/null; }
base_rootfs() {  # IMAGE: sets SP_ROOTFS
  local image=$1
  [[ $image =~ ^debian:([a-z]+)(-slim)?$ ]] \
    || fail "FROM $image: only debian:SUITE and debian:SUITE-slim are made here (teach base_rootfs in $0)"
  # As in the official images: /usr merged by symlinks (not the usrmerge package, which brings perl), and no apt
  # package cache files (/var/cache/apt/*.bin) left behind.
  local suite=${BASH_REMATCH[1]} args=(--variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
  args+=("--customize-hook=printf '%s\\n' 'Dir::Cache::pkgcache \"\";' 'Dir::Cache::srcpkgcache \"\";' \
>\"\$1/etc/apt/apt.conf.d/docker-clean\" && rm -f \"\$1\"/var/cache/apt/*.bin")
  if [[ -n ${BASH_REMATCH[2]} ]]; then
    # What the slim images leave out.
    local p
    for p in doc man info locale groff lintian linda; do
      args+=("--dpkgopt=path-exclude=/usr/share/$p/*")
    done
    args+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
  fi
  local start=$SECONDS
  sp_cached_rootfs "image-${image//:/-}" apt_works "${args[@]}" "$suite"
  if ((SP_ROOTFS_BUILT)); then
    echo "base $image: made in $((SECONDS - start)) s ($SP_ROOTFS)"
  else
    echo "base $image: cached ($SP_ROOTFS)"
  fi
}

# The build context: the repository through .dockerignore (root-anchored patterns, `*` not crossing `/`, a leading
# `**/` matching at any depth).
make_context() {
  local ignore=$SP_ROOT/.dockerignore excludes=() pattern
  if [[ -f $ignore ]]; then
    while IFS= read -r pattern || [[ -n $pattern ]]; do
      pattern=$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$pattern")
      [[ -z $pattern || $pattern == '#'* ]] && continue
      [[ $pattern == '!'* ]] && fail ".dockerignore exception '$pattern' is not supported (teach make_context in $0)"
      pattern=${pattern#/}
      pattern=${pattern%/}
      if [[ $pattern == '**/'* ]]; then
        excludes+=(--no-anchored --wildcards-match-slash "--exclude=${pattern#'**/'}")
      else
        excludes+=(--anchored --no-wildcards-match-slash "--exclude=./$pattern")
      fi
    done <"$ignore"
  fi
  mkdir -p "$work/context"
  tar -C "$SP_ROOT" "${excludes[@]}" -cf - . | tar -C "$work/context" -xf -
}

# Stage state, reset by every FROM.
declare -A stage_root=()
root="" workdir=/ user=0 entrypoint="" stage_args=()

docker_copy() {  # FROM_DIR DEST SOURCE...: COPY's rules (a directory source copies its contents)
  local from=$1 dest=$2 src path target; shift 2
  [[ $dest == /* ]] || dest=${workdir%/}/$dest
  target=$root$dest
  for src in "$@"; do
    [[ $src == *[*?[]* ]] && fail "COPY $src: wildcards are not supported (teach docker_copy in $0)"
    path=$from/${src#/}
    [[ -e $path ]] || fail "COPY $src: not found in $from"
    if [[ -d $path ]]; then
      mkdir -p "$target"
      cp -a "$path/." "$target/"
    elif [[ $dest == */ || -d $target ]]; then
      mkdir -p "$target"
      cp -a "$path" "$target/"
    else
      mkdir -p "$(dirname "$target")"
      cp -a "$path" "$target"
    fi
  done
}

docker_run() {  # COMMAND: the shell form of RUN
  local command=$1 start=$SECONDS log
  [[ $command == '['* ]] && fail "RUN in exec form is not supported: $command"
  [[ $user == 0 || $user == root || $user == 0:0 ]] || fail "RUN as USER $user is not supported"
  log=$work/run-$((++run_count)).log
  echo "RUN ${command:0:100}$([[ ${#command} -gt 100 ]] && echo ...)"
  mount_runtime "$root"
  mkdir -p "$root/var/cache/apt/archives"
  mnt --bind "$apt_cache" "$root/var/cache/apt/archives"
  local status=0
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${stage_args[@]}" \
    chroot "$root" /bin/sh -c "cd '$workdir' && $command" </dev/null >"$log" 2>&1 || status=$?
  unmount_all
  if [[ $status -ne 0 ]]; then
    tail -n 30 "$log" >&2
    fail "RUN failed with status $status (log above, whole log in $log with --keep): $command"
  fi
  echo "  done in $((SECONDS - start)) s"
}

make_context
run_count=0 stage_count=0 last_stage=""
while read -r instruction rest <&3; do
  case ${instruction^^} in
    FROM)
      read -r image as name extra <<<"$rest"
      [[ -z $extra && (-z $as || ${as^^} == AS) ]] || fail "cannot read FROM $rest"
      if [[ -n ${stage_root[$image]:-} ]]; then
        base=${stage_root[$image]}
      else
        base_rootfs "$image"
        base=$SP_ROOTFS
      fi
      root=$work/stage-$stage_count
      cp -a "$base" "$root"
      last_stage=${name:-$stage_count}  # Docker numbers the stages from 0
      stage_count=$((stage_count + 1))
      stage_root[$last_stage]=$root
      workdir=/ user=0 entrypoint="" stage_args=()
      echo "FROM $rest"
      ;;
    WORKDIR)
      [[ $rest == /* ]] || rest=${workdir%/}/$rest
      workdir=$rest
      mkdir -p "$root$workdir"
      ;;
    ARG)
      [[ $rest =~ ^([A-Za-z_][A-Za-z0-9_]*)(=(.*))?$ ]] || fail "cannot read ARG $rest"
      stage_args+=("${BASH_REMATCH[1]}=${BASH_REMATCH[3]}")
      ;;
    COPY)
      read -r -a words <<<"$rest"
      from=$work/context
      if [[ ${words[0]} == --from=* ]]; then
        from=${stage_root[${words[0]#--from=}]:-}
        [[ -n $from ]] || fail "COPY ${words[0]}: no such stage"
        words=("${words[@]:1}")
      fi
      [[ ${words[0]} == --* ]] && fail "COPY option ${words[0]} is not supported"
      [[ ${#words[@]} -ge 2 ]] || fail "cannot read COPY $rest"
      docker_copy "$from" "${words[-1]}" "${words[@]:0:${#words[@]}-1}"
      echo "COPY $rest"
      ;;
    RUN) docker_run "$rest" ;;
    USER) user=$rest ;;
    ENTRYPOINT)
      [[ $rest =~ ^\[\ *\"([^\"]+)\" ]] || fail "ENTRYPOINT is not in exec form: $rest"
      entrypoint=${BASH_REMATCH[1]}
      ;;
    EXPOSE | CMD | LABEL) ;;  # metadata: nothing to carry out
    *) fail "instruction $instruction is not supported (teach $0)" ;;
  esac
done 3< <(sp_dockerfile_instructions "$dockerfile")
build_seconds=$SECONDS

# The image: the last stage.
[[ -n $entrypoint ]] || fail "the last stage ($last_stage) has no ENTRYPOINT"
echo "checking stage $last_stage as the image (entry point $entrypoint)"
binary=$root$entrypoint
[[ -x $binary ]] || fail "the entry point $entrypoint is not an executable in the image"
sp_check_symbols_kept "$binary" || fail "the binary of the image is not stripped as doctor needs"
mount_runtime "$root"
[[ -d /sys/kernel/tracing ]] && findmnt -n /sys/kernel/tracing >/dev/null && \
  mnt --bind /sys/kernel/tracing "$root/sys/kernel/tracing"
version=$(chroot "$root" "$entrypoint" --version) || fail "$entrypoint --version failed"
echo "  --version: $version"
libs=$(chroot "$root" ldd "$entrypoint") || fail "ldd $entrypoint failed: $libs"
if grep -q 'not found' <<<"$libs"; then
  fail "libraries missing in the image:"$'\n'"$(grep 'not found' <<<"$libs")"
fi
echo "  ldd: $(grep -c '=>' <<<"$libs") libraries, none missing"
# In a PID namespace and /proc of its own, as in a container without hostPID: the host's processes (and whatever
# runs there) are not the image's business.
sp_doctor_alone "$root/proc" chroot "$root" "$entrypoint" || fail "doctor in the image"
unmount_all
[[ $SP_DOCTOR_STATUS -eq 0 ]] || fail "doctor in the image: some needed check failed"

size_kib=$(du -sk --one-file-system "$root" | cut -f1)
packages=$(chroot "$root" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii')
echo "image ok: $last_stage stage $((size_kib / 1024)) MiB, $packages packages, binary $(($(stat -c %s "$binary") / 1024)) KiB;" \
  "built in ${build_seconds} s, checked in $((SECONDS - build_seconds)) s"
