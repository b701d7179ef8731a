#!/usr/bin/env bash
# Measures the hybrid strategy's open design choices (locality window, working-set rule, push
# order, live passes) on one guest (default kvstore, 256 MiB, 1 Gbit/s), with post-copy as the
# reference.
# Usage: [CONFIGS=all|passes|locality|ws|pause|push] [GUEST=dirty CONFIG=size_mib=64,rate=8] \
#        bench/scripts/hybrid-choices.sh [REPEATS] > table.md   (from the repository root)
set -euo pipefail
repeats=${1:-3}
dotnet build src/Ferry.Cli -c Release -v quiet -nologo >/dev/null
ferry=src/Ferry.Cli/bin/Release/net10.0/ferry
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

start_host() { # name -> "api" on stdout
  "$ferry" host --listen 127.0.0.1:0 --name "$1" > "$work/$1.log" 2>&1 &
  until grep -q "ferry host:" "$work/$1.log"; do sleep 0.1; done
  awk '/ferry host:/ {print $4}' "$work/$1.log"
}
A=$(start_host A)
B=$(start_host B)

run() { # label, migrate options...
  local label=$1; shift
  for i in $(seq "$repeats"); do
    "$ferry" vm start "${GUEST:-kvstore}" ${CONFIG:+--config "$CONFIG"} --host "$A" --name kv >/dev/null
    sleep 4
    "$ferry" migrate kv --from "$A" --to "$B" --bandwidth 1Gbit --quiet --json "$work/r.json" "$@" >/dev/null || true
    python3 - "$label" "$work/r.json" >> "$work/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
f = r["networkFaults"]
print("\t".join(str(x) for x in [sys.argv[1], r["downtimeMs"], r["totalTimeMs"], f["count"], f["stallTotalMs"], f["stallP50Ms"],
    (r["workingSet"] or {}).get("bytes", 0) / 1048576, (r["guest"]["ipsDuring"] or 0) / 1e6, r["prefetch"]["hits"], r["prefetch"]["waste"]]))
PY
    "$ferry" vm stop kv --host "$B" >/dev/null; "$ferry" vm rm kv --host "$B" >/dev/null; "$ferry" vm rm kv --host "$A" >/dev/null
  done
}

configs=${CONFIGS:-all}
want() { [ "$configs" = all ] || [ "$configs" = "$1" ]; }
run "post-copy (reference)" --strategy postcopy
if want passes; then
  run "post-copy, one live pass first" --strategy postcopy --live-passes 1
  run "hybrid (default)" --strategy hybrid
  run "hybrid, one live pass first" --strategy hybrid --live-passes 1
fi
if want locality; then
  for l in 1 4 16 64; do run "hybrid, locality $l" --strategy hybrid --locality "$l"; done
  run "hybrid, adaptive locality (up to 16)" --strategy hybrid --locality-adaptive
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
print("| configuration | downtime ms | total ms | network faults | stall total ms | stall p50 ms | working set MiB | guest MIPS during | prefetch hits | prefetch waste |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, runs in rows.items():
    med = [st.median(c) for c in zip(*runs)]
    print(f"| {label} | {med[0]:.1f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.0f} | {med[4]:.3f} | {med[5]:.1f} | {med[6]:.1f} | {med[7]:.0f} | {med[8]:.0f} |")
PY
