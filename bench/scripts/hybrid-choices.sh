#!/usr/bin/env bash
# Measures the hybrid strategy's open design choices (locality window, working-set rule, push
# order, live passes) on one guest (default kvstore, 256 MiB, 1 Gbit/s), with post-copy as the
# reference.
# Usage: [CONFIGS=all|passes|locality|prepage|ws|pause|push] [GUEST=dirty CONFIG=size_mib=64,rate=8] \
#        [FERRY=/path/to/built/ferry] [BASELINE=/path/to/another/ferry] \
#        bench/scripts/hybrid-choices.sh [REPEATS] > table.md   (from the repository root)
# FERRY: a ferry already built (default: build this tree). BASELINE (CONFIGS=prepage): another
# build whose fixed and adaptive windows run as two more rows in the same sitting (e.g. the
# previous adaptive window), on its own pair of hosts. Each row's last column is the load average
# (1 minute) when its runs started: the machine is shared. DISTANCES=file appends each
# migration's prefetch hits per distance from the fault (the report's prefetch.byDistance).
set -euo pipefail
repeats=${1:-3}
if [ -z "${FERRY:-}" ]; then
  dotnet build src/Ferry.Cli -c Release -v quiet -nologo >/dev/null
fi
ferry=${FERRY:-src/Ferry.Cli/bin/Release/net10.0/ferry}
work=$(mktemp -d)
# The hosts start in command substitutions (not jobs of this shell): their ids are kept to end them.
trap 'kill $(cat "$work/pids" 2>/dev/null) 2>/dev/null; rm -rf "$work"' EXIT

start_host() { # name [binary] -> "api" on stdout
  "${2:-$ferry}" host --listen 127.0.0.1:0 --name "$1" > "$work/$1.log" 2>&1 &
  echo $! >> "$work/pids"
  until grep -qs "ferry host:" "$work/$1.log"; do sleep 0.1; done
  awk '/ferry host:/ {print $4}' "$work/$1.log"
}
A=$(start_host A)
B=$(start_host B)

run() { # label, migrate options... (${reps:-$repeats} migrations)
  local label=$1; shift
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  for i in $(seq "${reps:-$repeats}"); do
    rm -f "$work/r.json"
    "$ferry" vm start "${GUEST:-kvstore}" ${CONFIG:+--config "$CONFIG"} --host "$A" --name kv >/dev/null
    sleep 4
    if ! "$ferry" migrate kv --from "$A" --to "$B" --bandwidth 1Gbit --quiet --json "$work/r.json" "$@" >/dev/null || [ ! -s "$work/r.json" ]; then
      echo "$label: migration $i failed (left out)" >&2
      "$ferry" vm rm kv --host "$A" >/dev/null 2>&1 || "$ferry" vm stop kv --host "$A" >/dev/null 2>&1 || true
      "$ferry" vm rm kv --host "$A" >/dev/null 2>&1 || true
      "$ferry" vm stop kv --host "$B" >/dev/null 2>&1 || true; "$ferry" vm rm kv --host "$B" >/dev/null 2>&1 || true
      continue
    fi
    python3 - "$label" "$work/r.json" "$load" "${DISTANCES:-}" >> "$work/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
if sys.argv[4]:  # the windows' hits per distance from the fault, one JSON line per migration
    with open(sys.argv[4], "a") as d:
        d.write(json.dumps({"label": sys.argv[1], "faults": r["networkFaults"]["count"], "byDistance": r["prefetch"].get("byDistance")}) + "\n")
f = r["networkFaults"]
print("\t".join(str(x) for x in [sys.argv[1], r["downtimeMs"], r["totalTimeMs"], f["count"], f["stallTotalMs"], f["stallP50Ms"],
    (r["workingSet"] or {}).get("bytes", 0) / 1048576, (r["guest"]["ipsDuring"] or 0) / 1e6, r["prefetch"]["hits"], r["prefetch"]["waste"],
    r["bytesOnWire"] / 1048576, sys.argv[3],
    f["count"] / max(1e-9, (r["guest"]["ipsDuring"] or 0) * r["timeToFullyResidentMs"] / 1e3) * 1e9]))
PY
    "$ferry" vm stop kv --host "$B" >/dev/null; "$ferry" vm rm kv --host "$B" >/dev/null; "$ferry" vm rm kv --host "$A" >/dev/null
  done
}

configs=${CONFIGS:-all}
want() { [ "$configs" = all ] || [ "$configs" = "$1" ]; }
[ "$configs" = prepage ] || run "post-copy (reference)" --strategy postcopy
if want passes; then
  run "post-copy, one live pass first" --strategy postcopy --live-passes 1
  run "hybrid (default)" --strategy hybrid
  run "hybrid, one live pass first" --strategy hybrid --live-passes 1
fi
if want locality; then
  for l in 1 4 16 64; do run "hybrid, locality $l" --strategy hybrid --locality "$l"; done
  run "hybrid, adaptive locality (up to 16)" --strategy hybrid --locality-adaptive
fi
if want prepage; then
  # Interleaved (one migration of each configuration per round), so that the machine's load
  # falls on all of them alike.
  if [ -n "${BASELINE:-}" ]; then
    A0=$(start_host A0 "$BASELINE")
    B0=$(start_host B0 "$BASELINE")
  fi
  A1=$A; B1=$B; own=$ferry
  for round in $(seq "$repeats"); do
    reps=1
    A=$A1; B=$B1; ferry=$own
    run "post-copy (reference)" --strategy postcopy
    run "hybrid, fixed 16-page window" --strategy hybrid --locality-adaptive false
    run "hybrid, adaptive window (this build)" --strategy hybrid
    if [ -n "${BASELINE:-}" ]; then
      A=$A0; B=$B0; ferry=$BASELINE
      run "hybrid, fixed 16-page window (baseline build)" --strategy hybrid --locality-adaptive false
      run "hybrid, adaptive window (baseline build)" --strategy hybrid
    fi
    unset reps
  done
  A=$A1; B=$B1; ferry=$own
fi
if want ws; then
  run "hybrid, working set = 2 of 3 windows" --strategy hybrid --ws-min-hits 2
  run "hybrid, working set = 1 of 3 windows" --strategy hybrid --ws-min-hits 1
fi
if want pause; then
  run "hybrid (default)" --strategy hybrid
  run "hybrid, working set capped at a 20 ms pause" --strategy hybrid --ws-max-pause 20ms
fi
if want push; then
  run "hybrid, push linear" --strategy hybrid --push-order linear
  run "hybrid, push fault-near" --strategy hybrid --push-order fault-near
fi

python3 - "$work/rows" <<'PY'
import sys, statistics as st
from collections import OrderedDict
rows = OrderedDict()
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
print("| configuration | downtime ms | total ms | network faults | stall total ms | stall p50 ms | working set MiB | guest MIPS during | prefetch hits | prefetch waste | wire MiB | load | faults per 10^9 instructions |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, runs in rows.items():
    med = [st.median(c) for c in zip(*runs)]
    print(f"| {label} | {med[0]:.1f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.0f} | {med[4]:.3f} | {med[5]:.1f} | {med[6]:.1f} | {med[7]:.0f} | {med[8]:.0f} | {med[9]:.2f} | {med[10]:.1f} | {med[11]:.0f} |")
PY
