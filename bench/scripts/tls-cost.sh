#!/usr/bin/env bash
# What TLS costs a migration, above all its fault path: the same post-copy (or STRATEGY) move of
# one guest (default kvstore, 256 MiB, 1 Gbit/s) between two plain host agents and between two
# TLS host agents (mutual authentication, certificates made here with openssl), runs interleaved,
# then the medians and the TLS/plain ratios. Ratios, not absolute figures, are the result.
# Usage: [STRATEGY=hybrid] [GUEST=dirty CONFIG=size_mib=64,rate=8] bench/scripts/tls-cost.sh [REPEATS]
#        (from the repository root)
set -euo pipefail
repeats=${1:-3}
dotnet build src/Ferry.Cli -c Release -v quiet -nologo >/dev/null
ferry=src/Ferry.Cli/bin/Release/net10.0/ferry
work=$(mktemp -d)
touch "$work/pids"
trap 'kill $(cat "$work/pids") 2>/dev/null; rm -rf "$work"' EXIT

# A CA and one certificate (for 127.0.0.1) that the hosts and the CLI all present.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.crt" \
  -subj /CN=ferry-bench-ca -days 1 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/host.key" -out "$work/host.csr" -subj /CN=host 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > "$work/ext"
openssl x509 -req -in "$work/host.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -out "$work/host.crt" \
  -days 1 -extfile "$work/ext" 2>/dev/null
tls=(--tls-cert "$work/host.crt" --tls-key "$work/host.key" --tls-ca "$work/ca.crt")

start_host() { # name, options... -> "api" on stdout
  local name=$1; shift
  "$ferry" host --listen 127.0.0.1:0 --name "$name" "$@" > "$work/$name.log" 2>&1 &
  echo $! >> "$work/pids" # started in a subshell: not a job of this script
  until grep -q "ferry host:" "$work/$name.log"; do sleep 0.1; done
  awk '/ferry host:/ {print $4}' "$work/$name.log"
}
PA=$(start_host PA); PB=$(start_host PB)
TA=$(start_host TA "${tls[@]}"); TB=$(start_host TB "${tls[@]}")

run() { # label, A, B, credentials...
  local label=$1 a=$2 b=$3; shift 3
  "$ferry" vm start "${GUEST:-kvstore}" ${CONFIG:+--config "$CONFIG"} --host "$a" --name kv "$@" >/dev/null
  sleep 4
  "$ferry" migrate kv --from "$a" --to "$b" --strategy "${STRATEGY:-postcopy}" --bandwidth 1Gbit --quiet --json "$work/r.json" "$@" >/dev/null || true
  python3 - "$label" "$work/r.json" >> "$work/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
f = r["networkFaults"]
print("\t".join(str(x) for x in [sys.argv[1], r["outcome"], r["totalTimeMs"], r["downtimeMs"], f["count"], f["stallP50Ms"], f["stallP99Ms"], f["stallTotalMs"]]))
PY
  "$ferry" vm stop kv --host "$b" "$@" >/dev/null; "$ferry" vm rm kv --host "$b" "$@" >/dev/null; "$ferry" vm rm kv --host "$a" "$@" >/dev/null
}

for i in $(seq "$repeats"); do
  run plain "$PA" "$PB"
  run tls "$TA" "$TB" "${tls[@]}"
done

python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cols = ["total ms", "downtime ms", "faults", "stall p50 ms", "stall p99 ms", "stall total ms"]
print("| run | outcome | " + " | ".join(cols) + " |")
print("|---|---|" + "---:|" * len(cols))
for r in rows:
    print(f"| {r[0]} | {r[1]} | " + " | ".join(f"{float(x):.3f}" for x in r[2:]) + " |")
med = {k: [statistics.median(float(r[i + 2]) for r in rows if r[0] == k) for i in range(len(cols))] for k in ("plain", "tls")}
for k in ("plain", "tls"):
    print(f"| median {k} | | " + " | ".join(f"{v:.3f}" for v in med[k]) + " |")
print("| TLS / plain | | " + " | ".join(f"{t / p:.2f}" if p else "-" for t, p in zip(med["tls"], med["plain"])) + " |")
PY
