#!/usr/bin/env python3
"""Show or patch the Ferry config block (.ferry_config section) of a guest ELF.

  patchcfg.py GUEST.elf                      list entries
  patchcfg.py GUEST.elf -o OUT.elf k=v ...   write a copy with values patched
  patchcfg.py GUEST.elf -i k=v ...           patch in place

Block layout (little-endian): u64 magic "FERRYCFG" (0x4746435952524546),
u32 version (1), u32 count (<= 16), then count x {char name[16]; u64 value}.
Values accept decimal or 0x-prefixed hex.  Standard library only.
"""
import struct
import sys

MAGIC = 0x4746435952524546


def find_section(data, want):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("not a little-endian ELF64 file")
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def sh(i):
        # name, type, flags, addr, offset, size
        return struct.unpack_from("<IIQQQQ", data, e_shoff + i * e_shentsize)
    stroff = sh(e_shstrndx)[4]
    for i in range(e_shnum):
        name, typ, flags, addr, off, size = sh(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end].decode() == want:
            return off, size, addr
    raise SystemExit("no %s section" % want)


def parse(data):
    off, size, addr = find_section(data, ".ferry_config")
    magic, version, count = struct.unpack_from("<QII", data, off)
    if magic != MAGIC or version != 1 or count > 16 or 16 + 24 * count > size:
        raise SystemExit("bad config block (magic %#x version %d count %d)" % (magic, version, count))
    entries = []
    for i in range(count):
        eo = off + 16 + 24 * i
        name = data[eo:eo + 16].rstrip(b"\0").decode()
        value, = struct.unpack_from("<Q", data, eo + 16)
        entries.append((name, value, eo + 16))
    return addr, entries


def main(argv):
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    src = args.pop(0)
    out = None
    if args and args[0] == "-i":
        out = src
        args.pop(0)
    elif args and args[0] == "-o":
        args.pop(0)
        out = args.pop(0)
    data = bytearray(open(src, "rb").read())
    addr, entries = parse(data)
    if not args:
        print("%s: .ferry_config at %#x, %d entries" % (src, addr, len(entries)))
        for name, value, _ in entries:
            print("  %-16s %d" % (name, value))
        return 0
    if out is None:
        raise SystemExit("give -o OUT.elf or -i to patch")
    byname = {n: o for n, _, o in entries}
    for kv in args:
        k, _, v = kv.partition("=")
        if k not in byname:
            raise SystemExit("unknown key %r (have: %s)" % (k, ", ".join(byname)))
        struct.pack_into("<Q", data, byname[k], int(v, 0) & (2**64 - 1))
    open(out, "wb").write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
