#!/usr/bin/env bash
# Lists the SBI calls the Linux guest makes under QEMU: a gdb breakpoint on the kernel's
# sbi_ecall() (its only `ecall`), printing the extension id, function id and first argument.
# Needs gdb-multiarch.  The guest runs kvstore for 100 ops, then powers off.
#
# Usage: guests/linux/sbi-trace.sh [--cpu rv64,sstc=false] [--bios default|PATH]
#                                  [--append "ARGS"] [--port 12345]
# Prints one line per distinct call with its count (e.g. "1 SBI ext=0x10 fid=3 arg0=0x54494d45").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cpu=rv64 bios=default append="" port=12345
while (($#)); do
  case "$1" in
    --cpu) cpu="$2"; shift ;;
    --bios) bios="$2"; shift ;;
    --append) append="$2"; shift ;;
    --port) port="$2"; shift ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
  shift
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
gzip -dc "$here/bin/Image.gz" > "$tmp/Image"
addr="$(gzip -dc "$here/bin/System.map.gz" | awk '$3 == "sbi_ecall" { print $1 }')"
cat > "$tmp/sbi.gdb" <<EOF
set pagination off
set confirm off
set architecture riscv:rv64
target remote :$port
break *0x$addr
commands
  silent
  printf "SBI ext=0x%lx fid=%ld arg0=0x%lx\n", \$a0, \$a1, \$a2
  continue
end
continue
EOF

nice -n 19 qemu-system-riscv64 -M virt -cpu "$cpu" -m 256M -smp 1 -display none \
  -serial "file:$tmp/serial.log" -monitor none -gdb "tcp:127.0.0.1:$port" -S -bios "$bios" \
  -kernel "$tmp/Image" -initrd "$here/bin/initramfs.cpio.gz" \
  -append "console=ttyS0 ferry.workload=kvstore ferry.table_mib=1 ferry.ops=100 $append" &
qpid=$!
sleep 1
timeout 120 gdb-multiarch -q -batch -x "$tmp/sbi.gdb" > "$tmp/gdb.log" 2>&1 || true
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
# set_timer's argument (the deadline) differs per call: fold those together
grep '^SBI' "$tmp/gdb.log" | sed '/ext=0x54494d45 /s/arg0=0x[0-9a-f]*$/arg0=(deadline)/' |
  sort | uniq -c || true
grep -q 'reboot: Power down' "$tmp/serial.log" && echo "(guest powered off)" || { echo "guest did not power off:"; tail -5 "$tmp/serial.log"; }
