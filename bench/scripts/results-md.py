#!/usr/bin/env python3
"""Turns a `ferry bench` results.json into the markdown tables of docs/results.md:
medians with min-max per workload and strategy, then (--stages) where each network fault's
time went, stage by stage (medians over the runs of each run's p50 and mean, in µs), or
(--boot) the Linux boots to ready, Ferry's and QEMU's.
Usage: bench/scripts/results-md.py DIR/results.json [--stages|--boot] > table.md"""
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
    ("µs/fault", "stallPerFaultMs", 1000, 0),
    ("slowdown", "slowdown", 1, 2),
    ("MIPS during", "guestMipsDuring", 1, 1),
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


STAGES = ["request", "network", "sourceQueue", "sourceLink", "install", "resume", "inFlight", "total"]


def stages(results, strategies):
    print("| workload | strategy | faults | " + " | ".join(f"{s} p50/mean/p99" for s in STAGES) + " | on its way | GC | runtime stops |")
    print("|---|---|---:|" + "---:|" * (len(STAGES) + 3))
    for w in results["workloads"]:
        for s in strategies:
            runs = [r for r in results["runs"] if r["workload"] == w["name"] and r["strategy"] == s
                    and r.get("report") and r["report"]["networkFaults"].get("stages") and r["report"]["networkFaults"]["count"] > 0]
            if not runs:
                continue
            cells = []
            for stage in STAGES:
                ss = [r["report"]["networkFaults"]["stages"][stage] for r in runs]
                if all(x["count"] == 0 for x in ss):
                    cells.append("-")
                    continue
                p50 = st.median(x["p50Ms"] * 1000 for x in ss)
                mean = st.median(x["meanMs"] * 1000 for x in ss)
                p99 = st.median(x["p99Ms"] * 1000 for x in ss)
                cells.append(f"{p50:.0f}/{mean:.0f}/{p99:.0f}")
            faults = st.median(r["report"]["networkFaults"]["count"] for r in runs)
            resent = st.median(r["report"]["networkFaults"].get("alreadyOnItsWay", 0) for r in runs)
            gc = st.median(r["report"]["networkFaults"].get("destinationGcCollections", 0) for r in runs)
            # The destination's runtime stops from its resume to its final report: count / total ms (older reports: -).
            rts = [r["report"].get("runtime") and r["report"]["runtime"].get("destination") for r in runs]
            stops = f"{st.median(x['count'] for x in rts):.0f} / {st.median(x['totalMs'] for x in rts):.1f}" if all(rts) else "-"
            print(f"| {w['name']} | {s} | {faults:.0f} | " + " | ".join(cells) + f" | {resent:.0f} | {gc:.0f} | {stops} |")


def boot(results):
    b = results.get("linuxBoot")
    if not b:
        print("(no Linux workload in this run)")
        return
    def med(xs, key, scale, digits):
        vals = [x[key] * scale for x in xs if x.get(key) is not None]
        if not vals:
            return "n/m"
        fmt = f"{{:.{digits}f}}"
        m, lo, hi = fmt.format(st.median(vals)), fmt.format(min(vals)), fmt.format(max(vals))
        return m if lo == hi else f"{m} ({lo}-{hi})"
    print(f"Command line: `{b['commandLine']}`\n")
    print("| machine | seconds to ready | instructions to ready (M) |")
    print("|---|---:|---:|")
    print(f"| Ferry | {med(b['ferry'], 'seconds', 1, 2)} | {med(b['ferry'], 'instructions', 1e-6, 1)} |")
    if b.get("qemu"):
        print(f"| QEMU (TCG, its own OpenSBI; instructions under -icount shift=0,sleep=off) | {med(b['qemu'], 'seconds', 1, 2)} | {med(b['qemuIcount'], 'instructions', 1e-6, 1)} |")


def main():
    results = json.load(open(sys.argv[1]))
    if "--boot" in sys.argv:
        boot(results)
        return
    if "--stages" in sys.argv:
        strategies = []
        for r in results["runs"]:
            if r["strategy"] not in strategies:
                strategies.append(r["strategy"])
        stages(results, strategies)
        return
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
