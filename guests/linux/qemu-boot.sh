#!/usr/bin/env bash
# Boots the Linux guest under QEMU's virt machine, waits for "ferry-init: ready",
# prints the elapsed wall time, optionally watches the workload for a while, then
# kills QEMU.
#
# Usage: guests/linux/qemu-boot.sh [options]
#   --bios default|PATH   firmware (default: QEMU's own OpenSBI; e.g. guests/firmware/fw_dynamic.bin)
#   --workload NAME       ferry.workload= (default kvstore)
#   --append "ARGS"       extra kernel command-line arguments
#   --icount[=OPTS]       run with -icount OPTS (default shift=0,sleep=off: 1 instruction =
#                         1 ns of virtual time, deterministic) and ferry.timing=1: reports
#                         the time and instret CSRs at ready
#   --after SECONDS       keep watching the console this long after ready (default 0)
#   --expect REGEX        after ready, require a console line matching REGEX within --after
#   --send TEXT           after ready, type TEXT on the console (e.g. $'ls /\npoweroff\n')
#   --timeout SECONDS     give up waiting for ready (default 60)
#   --mem SIZE            guest RAM (default 256M)
#   --kernel PATH / --initrd PATH   (default guests/linux/bin/Image.gz, initramfs.cpio.gz)
#   --log PATH            where the console log goes (default a temp file, printed on failure)
#   -q                    do not echo the console
# Exit status: 0 if ready (and --expect) was seen, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bios=default workload=kvstore append="" send="" icount=0 after=0 expect="" timeout=60 mem=256M
kernel="$here/bin/Image.gz" initrd="$here/bin/initramfs.cpio.gz" log="" quiet=0 icount_opts=shift=0,sleep=off
while (($#)); do
  case "$1" in
    --bios) bios="$2"; shift ;;
    --workload) workload="$2"; shift ;;
    --append) append="$2"; shift ;;
    --icount) icount=1 ;;
    --icount=*) icount=1; icount_opts="${1#--icount=}" ;;
    --after) after="$2"; shift ;;
    --expect) expect="$2"; shift ;;
    --send) send="$2"; shift ;;
    --timeout) timeout="$2"; shift ;;
    --mem) mem="$2"; shift ;;
    --kernel) kernel="$2"; shift ;;
    --initrd) initrd="$2"; shift ;;
    --log) log="$2"; shift ;;
    -q) quiet=1 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "qemu-boot.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
[ -n "$log" ] || log="$tmp/console.log"
: > "$log"

# QEMU's riscv -kernel loader takes an uncompressed Image.
case "$kernel" in
  *.gz) gzip -dc "$kernel" > "$tmp/Image"; kernel="$tmp/Image" ;;
esac

cmdline="console=ttyS0 ferry.workload=$workload"
qemu=(qemu-system-riscv64 -M virt -m "$mem" -smp 1 -nographic -bios "$bios"
      -kernel "$kernel" -initrd "$initrd")
if ((icount)); then
  qemu+=(-icount "$icount_opts")
  cmdline+=" ferry.timing=1"
fi
[ -z "$append" ] || cmdline+=" $append"
qemu+=(-append "$cmdline")

now() { date +%s%N; }
start=$(now)
coproc QEMU { exec nice -n 19 "${qemu[@]}" 2>&1; }
qpid=$QEMU_PID
exec {qout}<&"${QEMU[0]}"

ready_ns="" timing="" matched=""
deadline=$((start + timeout * 1000000000))
phase=boot
while :; do
  left=$(((deadline - $(now)) / 1000000))   # ms
  ((left > 0)) || break
  if ! IFS= read -r -t "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))" -u "$qout" line; then
    break
  fi
  line="${line%$'\r'}"
  printf '%s\n' "$line" >> "$log"
  ((quiet)) || printf '%s\n' "$line"
  if [ "$phase" = boot ] && [ "$line" = "ferry-init: ready" ]; then
    ready_ns=$(($(now) - start))
    phase=after
    # after ready: watch for --after seconds, or (default) until the timing line and
    # the --expect line have been seen, 30 s at most
    [ -z "$send" ] || printf '%s' "$send" >&"${QEMU[1]}"
    if ((after > 0)); then deadline=$(($(now) + after * 1000000000)); else deadline=$(($(now) + 30000000000)); fi
  elif [ "$phase" = after ]; then
    [[ "$line" != "ferry-init: timing "* ]] || timing="${line#ferry-init: timing }"
    [ -z "$expect" ] || [ -n "$matched" ] || [[ ! "$line" =~ $expect ]] || matched="$line"
  fi
  if [ "$phase" = after ] && ((after == 0)) && { ((icount == 0)) || [ -n "$timing" ]; } &&
     { [ -z "$expect" ] || [ -n "$matched" ]; }; then
    break
  fi
done
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true

echo "---"
echo "qemu: ${qemu[*]}"
if [ -z "$ready_ns" ]; then
  echo "FAIL: no 'ferry-init: ready' within ${timeout}s (log: $log)"
  ((quiet == 0)) || tail -30 "$log"
  exit 1
fi
printf 'ready after %d.%03d s wall (QEMU start to the ready line)\n' \
  $((ready_ns / 1000000000)) $(((ready_ns / 1000000) % 1000))
if [ -n "$timing" ]; then
  read -r _ time _ instret <<< "$timing"
  # virt's timebase is 10 MHz: 1 tick = 100 ns = 100 instructions at shift=0
  echo "icount: time CSR $time ticks = $((time * 100)) ns virtual; instret $instret instructions (since reset, OpenSBI included)"
fi
if [ -n "$expect" ]; then
  if [ -z "$matched" ]; then echo "FAIL: no line matching /$expect/ after ready"; exit 1; fi
  echo "workload: $matched"
fi
