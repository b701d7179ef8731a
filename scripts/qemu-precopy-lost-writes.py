#!/usr/bin/env python3
"""QEMU's live pre-copy of a TCG guest loses writes: a reproduction without Ferry in the loop.

Runs guests/bin/kvstore.elf (configured with a 40 MiB table) in two qemu-system-riscv64
processes (-M virt -m 64M -bios none), migrates it from one to the other over loopback TCP at
1 Gbit/s with a 20 ms downtime limit, lets it run 2 s at the destination, and prints whether the
guest's own consistency check found a lost write ("CORRUPT key K"). With --stopped the source is
paused before the migration starts (a non-live migration of the same guest: the control).

    python3 scripts/qemu-precopy-lost-writes.py [--runs N] [--stopped] [--accel ARGS]

Each line: live|stopped, QEMU's status, total ms, downtime ms, dirty syncs, and
"lost write" or "consistent". See docs/results.md ("QEMU's pre-copy loses writes").
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

CONFIG_MAGIC = 0x4746435952524546  # "FERRYCFG", guests/common/config.h


def configured(elf: bytes, values: dict) -> bytes:
    b = bytearray(elf)
    at = b.find(struct.pack("<Q", CONFIG_MAGIC))
    count = struct.unpack_from("<I", b, at + 12)[0]
    for k in range(count):
        entry = at + 16 + 24 * k
        name = bytes(b[entry:entry + 16]).rstrip(b"\0").decode()
        if name in values:
            struct.pack_into("<Q", b, entry + 16, values[name])
    return bytes(b)


class Qmp:
    def __init__(self, path: str):
        for _ in range(200):
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.io = self.sock.makefile("rw")
        self.io.readline()
        self.run("qmp_capabilities")

    def run(self, command: str, **arguments):
        self.io.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.io.flush()
        while True:
            reply = json.loads(self.io.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")


def once(elf_path: str, directory: str, stopped: bool, accel: list) -> str:
    def start(name: str, incoming: str | None = None):
        args = ["qemu-system-riscv64", "-M", "virt", "-m", "64M", "-nodefaults", "-display", "none",
                "-serial", f"file:{directory}/{name}.out", "-bios", "none", "-kernel", elf_path,
                "-qmp", f"unix:{directory}/{name}.qmp,server=on,wait=off", *accel]
        if incoming:
            args += ["-incoming", incoming]
        return subprocess.Popen(args)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    destination = start("destination", f"tcp:127.0.0.1:{port}")
    source = start("source")
    try:
        src, dst = Qmp(f"{directory}/source.qmp"), Qmp(f"{directory}/destination.qmp")
        time.sleep(1.5)  # populated, serving
        for q in (src, dst):
            q.run("migrate-set-parameters", **{"max-bandwidth": 125_000_000, "downtime-limit": 20})
        if stopped:
            src.run("stop")
        src.run("migrate", uri=f"tcp:127.0.0.1:{port}")
        began = time.time()
        while True:
            info = src.run("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled") or time.time() - began > 30:
                break
            time.sleep(0.02)
        if stopped:
            time.sleep(0.3)
            dst.run("cont")
        time.sleep(2)
    finally:
        for p in (source, destination):
            p.kill()
            p.wait()
    console = open(f"{directory}/destination.out", errors="replace").read()
    verdict = "lost write: " + console[console.index("CORRUPT"):].split("\n")[1] if "CORRUPT" in console else "consistent"
    return (f"{'stopped' if stopped else 'live'} {info.get('status')} total {info.get('total-time')} ms "
            f"downtime {info.get('downtime')} ms syncs {info.get('ram', {}).get('dirty-sync-count')}: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--stopped", action="store_true", help="pause the source first (non-live)")
    parser.add_argument("--accel", default="", help="extra QEMU arguments, e.g. '-accel tcg,thread=single'")
    a = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    elf = open(os.path.join(root, "guests", "bin", "kvstore.elf"), "rb").read()
    lost = 0
    with tempfile.TemporaryDirectory(prefix="qemu-lost-writes-") as directory:
        path = os.path.join(directory, "kvstore.elf")
        with open(path, "wb") as f:
            f.write(configured(elf, {"table_mib": 40, "report_every": 20000}))
        for _ in range(a.runs):
            line = once(path, directory, a.stopped, a.accel.split())
            lost += "lost write" in line
            print(line, flush=True)
    print(f"{lost} of {a.runs} runs lost a write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
