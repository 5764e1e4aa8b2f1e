#!/usr/bin/env bash
# scripts/lib/kmatrix_table.py, the kernel matrix's verdict and tables, on made-up runs: a kernel passes only when its
# run finished, doctor passed, every smoke test passed and no BPF program was left; each way of failing is named.
set -euo pipefail
table=$(cd "$(dirname "$0")/.." && pwd)/scripts/lib/kmatrix_table.py
dir=$(mktemp -d /tmp/sp-kmatrix-table.XXXXXX)
trap 'rm -rf "$dir"' EXIT
failures=0
check() {  # WHAT EXPECTED_STATUS GREP_PATTERN SERIES...
  local what=$1 want=$2 pattern=$3 status=0 out
  shift 3
  out=$(python3 "$table" "$dir" "$@") || status=$?
  if [[ $status -ne $want ]] || ! grep -qF -- "$pattern" <<<"$out"; then
    echo "FAIL: $what (status $status, wanted $want; looked for '$pattern')"
    echo "$out"
    failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}
good() {  # SERIES: a run that passed
  cat >"$dir/$1.results" <<EOF
KMATRIX kernel 6.1.0-57-cloud-amd64
KMATRIX boot_seconds 13.9
KMATRIX time_scale 20
KMATRIX doctor 2026-12-07T15:21:56.966Z info: block I/O: attached (tp_btf: block_rq_insert, block_rq_issue)
KMATRIX doctor [ok  ] BPF hook tp_btf/block_rq_issue
KMATRIX doctor [warn] probe family nvme loads: no nvme driver on this machine
KMATRIX doctor_status 0
KMATRIX tests_status 0
KMATRIX test GcAgentIT.TwoWorkers passed 61.5s
KMATRIX compared GcAgentIT.TwoWorkers gc_fast.gen0.pauses 15 of 15
KMATRIX compared GcAgentIT.TwoWorkers gc_fast.attached_by usdt
KMATRIX test DetachIT.Sigterm passed 71.3s
KMATRIX bpf_programs_left 0
KMATRIX run_seconds 442
KMATRIX done
KMATRIX wall_seconds 470
EOF
}

good 6.1
check "a good run passes" 0 "| pass |" 6.1
check "the counts are in the table" 0 "| GcAgentIT: gc_fast.gen0.pauses | 15 of 15 |" 6.1
check "the attach method is in the table" 0 "| GcAgentIT: gc_fast.attached_by | usdt |" 6.1
check "doctor's warning keeps its reason" 0 "warn: no nvme driver on this machine" 6.1
check "the block I/O hooks are in the table" 0 "| block I/O attached by | attached (tp_btf: block_rq_insert" 6.1

good 6.12
sed -i 's/^KMATRIX test DetachIT.Sigterm passed/KMATRIX test DetachIT.Sigterm FAILED/; s/^KMATRIX tests_status 0/KMATRIX tests_status 1/' \
  "$dir/6.12.results"
check "a failed test fails the kernel and is named" 1 "DetachIT.Sigterm FAILED" 6.1 6.12

good 6.12
sed -i '/^KMATRIX done/d' "$dir/6.12.results"
check "a run that did not finish fails" 1 "the run did not finish" 6.12

good 6.12
sed -i 's/^KMATRIX bpf_programs_left 0/KMATRIX bpf_programs_left 3/' "$dir/6.12.results"
check "programs left behind fail" 1 "3 BPF programs left" 6.12

good 6.12
sed -i 's/^KMATRIX doctor_status 0/KMATRIX doctor_status 2/' "$dir/6.12.results"
check "doctor not finishing fails" 1 "doctor status 2" 6.12

good 6.12
sed -i '/^KMATRIX test /d; /^KMATRIX compared /d' "$dir/6.12.results"
check "no test at all fails" 1 "no test ran" 6.12

check "a kernel without results fails" 1 "no results" 6.1 control

[[ $failures -eq 0 ]] || { echo "$failures failed"; exit 1; }
