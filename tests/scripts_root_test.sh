#!/usr/bin/env bash
# README's two commands (scripts/demo.sh, scripts/test.sh) work as written from a root shell without sudo, and from
# another user ask for root through sudo, or say that they need it when there is no sudo. Only the privilege check
# runs: nothing is installed or built. The other user is 'nobody' (runuser), so this needs root; exits 77 otherwise.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/common.sh"
[[ $(id -u) -eq 0 ]] || { echo "not root: runuser needs it"; exit 77; }

tmp=$(mktemp -d /tmp/sp-root-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# PATHs without sudo: every command of /usr/bin and /usr/sbin but sudo; the second one with a stand-in sudo that
# records what it was asked to run and returns 42.
mkdir "$tmp/nosudo" "$tmp/fakesudo"
ln -s -t "$tmp/nosudo" /usr/sbin/* 2>/dev/null || true  # a name in both dirs: the /usr/bin one below
ln -sf -t "$tmp/nosudo" /usr/bin/*
rm -f "$tmp/nosudo/sudo" "$tmp/nosudo/sudoedit"
cat >"$tmp/fakesudo/sudo" <<EOF
#!/bin/sh
printf '%s\n' "\$@" >"$tmp/sudo.args"
exit 42
EOF
chmod 0755 "$tmp/fakesudo/sudo"
install -m 0666 /dev/null "$tmp/sudo.args"  # written by the stand-in as nobody
nosudo=$tmp/nosudo
fakesudo=$tmp/fakesudo:$tmp/nosudo

cd "$SP_ROOT"
# README: exactly the two commands, without sudo; CI runs the README's test command.
mapfile -t readme < <(sed -n '/^```sh$/,/^```$/{/^```/d;p}' README.md | sed -n '1,2p' | awk '{ print $1 }')
[[ ${readme[*]} == "scripts/demo.sh scripts/test.sh" ]] || fail "README's commands are: ${readme[*]}"
grep -q 'scripts/test\.sh' .ci/run || fail ".ci/run does not run scripts/test.sh"

# As root, no sudo on PATH: the check lets the script go on; --help works and says how root is obtained.
out=$(env PATH="$nosudo" bash -c 'source scripts/lib/common.sh; sp_as_root scripts/demo.sh --listen x; echo went-on' 2>&1) \
  || fail "root without sudo: the check failed: $out"
[[ $out == went-on ]] || fail "root without sudo: the check said: $out"
for script in scripts/demo.sh scripts/test.sh; do
  out=$(env PATH="$nosudo" "$script" --help 2>&1) || fail "root: $script --help failed: $out"
  grep -q sudo <<<"$out" || fail "$script --help does not say it asks sudo for root"
done
out=$(env PATH="$nosudo" scripts/demo.sh --help)
if ! grep -q '130' <<<"$out" || ! grep -q '143' <<<"$out"; then
  fail "demo.sh --help does not give its status after a signal"
fi

runuser -u nobody -- test -r scripts/lib/common.sh || { echo "user nobody cannot read $SP_ROOT: skipped"; exit 77; }
# as_nobody PATH COMMAND...: COMMAND as user nobody with a clean environment (plus two of ours and an unrelated one),
# bounded: without the check it would set up and build.
as_nobody() {
  local path=$1; shift
  timeout 30 runuser -u nobody -- env -i PATH="$path" HOME=/nonexistent SP_BUILD_DIR="$tmp/build" \
    SYNAPSE_PROFILER_REQUIRE_BPF=1 UNRELATED=1 "$@"
}
for script in scripts/demo.sh scripts/test.sh; do
  # Not root, no sudo: a clear message, status 1, before anything else runs.
  status=0
  out=$(as_nobody "$nosudo" "$script" 2>&1) || status=$?
  [[ $status -eq 1 ]] || fail "nobody without sudo: $script ended with $status, expected 1"
  [[ $out == *"needs root"*"sudo is not installed"* ]] || fail "nobody without sudo: $script said: $out"
  [[ $(wc -l <<<"$out") -eq 1 ]] || fail "nobody without sudo: $script did more than refuse: $out"
  # Not root, sudo there: the script runs again through it with its arguments and our variables; sudo's status is
  # the script's (exec).
  : >"$tmp/sudo.args"
  status=0
  out=$(as_nobody "$fakesudo" "$script" --listen 127.0.0.1:1 2>&1) || status=$?
  [[ $status -eq 42 ]] || fail "nobody with sudo: $script ended with $status, expected sudo's 42: $out"
  [[ $out == *"running it again through sudo"* ]] || fail "nobody with sudo: $script said: $out"
  mapfile -t args <"$tmp/sudo.args"
  if [[ ${#args[@]} -ne 6 || ${args[0]} != --preserve-env=SP_BUILD_DIR,SYNAPSE_PROFILER_REQUIRE_BPF \
        || ${args[1]} != -- || ${args[2]} != */bash || ${args[3]} != "$script" \
        || ${args[4]} != --listen || ${args[5]} != 127.0.0.1:1 ]]; then
    fail "nobody with sudo: $script asked sudo for: ${args[*]}"
  fi
done

[[ $failed -eq 0 ]] && echo "ok: root without sudo goes on, another user asks sudo or says it needs root"
exit $failed
