#!/usr/bin/env python3
"""Turns a `ferry bench` results.json into the markdown table of docs/results.md:
medians with min-max per workload and strategy.
Usage: bench/scripts/results-md.py DIR/results.json > table.md"""
import json
import statistics as st
import sys

COLUMNS = [  # (heading, key, scale, digits)
    ("total ms", "totalTimeMs", 1, 0),
    ("link limit ms", "linkLimitMs", 1, 0),
    ("downtime ms", "downtimeMs", 1, 2),
    ("wire MiB", "bytesOnWire", 1 / 1048576, 1),
    ("faults", "networkFaults", 1, 0),
    ("stall ms", "faultStallMs", 1, 0),
    ("slowdown", "slowdown", 1, 2),
    ("resident ms", "timeToFullyResidentMs", 1, 0),
    ("guest MIPS", "guestMips", 1, 1),
]


def cell(runs, key, scale, digits):
    values = [r[key] * scale for r in runs if r.get(key) is not None]
    if not values:
        return "n/m"
    fmt = f"{{:.{digits}f}}"
    med = fmt.format(st.median(values))
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return med if lo == hi else f"{med} ({lo}-{hi})"


def main():
    results = json.load(open(sys.argv[1]))
    strategies = []
    for r in results["runs"]:
        if r["strategy"] not in strategies:
            strategies.append(r["strategy"])
    print("| workload | strategy | outcome | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|---|" + "---:|" * len(COLUMNS))
    for w in results["workloads"]:
        for s in strategies:
            runs = [r for r in results["runs"] if r["workload"] == w["name"] and r["strategy"] == s]
            if not runs:
                continue
            outcomes = sorted({r["outcome"] for r in runs})
            ok = [r for r in runs if r["outcome"] in ("completed", "forced-stop-and-copy")]
            cells = [cell(ok, *c[1:]) if ok else "-" for c in COLUMNS]
            print(f"| {w['name']} | {s} | {', '.join(outcomes)} | " + " | ".join(cells) + " |")


main()
