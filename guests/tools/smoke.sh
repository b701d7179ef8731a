#!/bin/sh
# Smoke-test the guests under QEMU with small, finite configs (run from guests/:
# `make check`).  Each case: patch the config block with patchcfg.py, run twice,
# require identical output, the expected exit status and the expected last line.
set -u
QEMU=${QEMU:-qemu-system-riscv64}
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

run() { # elf -> stdout; exit status of the guest
    timeout 120 "$QEMU" -M virt -m 256M -bios none -nographic -monitor none -kernel "$1"
}

# case NAME GUEST EXPECTED_RC EXPECTED_LAST_LINE_REGEX [key=value ...]
case_() {
    name=$1 guest=$2 want_rc=$3 want_last=$4
    shift 4
    elf=$tmp/$name.elf
    if [ $# -gt 0 ]; then
        python3 tools/patchcfg.py "bin/$guest.elf" -o "$elf" "$@" || { fail=1; return; }
    else
        cp "bin/$guest.elf" "$elf"
    fi
    run "$elf" >"$tmp/$name.out1" 2>"$tmp/$name.err"; rc=$?
    run "$elf" >"$tmp/$name.out2" 2>>"$tmp/$name.err"
    last=$(tail -n 1 "$tmp/$name.out1")
    if [ "$rc" != "$want_rc" ]; then
        echo "FAIL $name: exit status $rc, want $want_rc"; fail=1
    elif ! cmp -s "$tmp/$name.out1" "$tmp/$name.out2"; then
        echo "FAIL $name: output differs between two runs"; fail=1
    elif ! printf '%s\n' "$last" | grep -Eq "^($want_last)\$"; then
        echo "FAIL $name: last line '$last', want /$want_last/"; fail=1
    else
        echo "ok   $name ($(wc -l <"$tmp/$name.out1") lines): $last"
    fi
}

case_ hello        hello   0 'lcg10 = 0x[0-9a-f]+, 1000000007 \* 998244353 = 998244359987710471'
case_ idle         idle    0 'beat 5'               interval_ms=10 pages=16 beats=5
case_ dirty-seq    dirty   0 'pass 20'              size_mib=16 passes=20
case_ dirty-rand   dirty   0 'pass 5'               size_mib=16 passes=5 pattern=1
case_ dirty-rate   dirty   0 'pass 3'               size_mib=1 passes=3 rate=64 pattern=1
case_ verify       verify  0 'OK pass 3'            size_mib=4 passes=3
case_ kvstore      kvstore 0 'ops 400000 hits [0-9]+ sum 0x[0-9a-f]+' table_mib=16 ops=400000 report_every=100000
case_ kvstore-odd  kvstore 0 'ops 12345 hits [0-9]+ sum 0x[0-9a-f]+'  table_mib=4 hot_pct=10 hot_ops_pct=50 put_pct=50 ops=12345 report_every=10000
case_ compute-alu  compute 0 'compute kernel 0 result 0x[0-9a-f]+' iterations=100000
case_ compute-mem  compute 0 'compute kernel 1 result 0x[0-9a-f]+' kernel=1 iterations=100000
case_ compute-bad  compute 2 'compute: unknown kernel 9' kernel=9

[ $fail = 0 ] && echo "all guest smoke tests passed"
exit $fail
