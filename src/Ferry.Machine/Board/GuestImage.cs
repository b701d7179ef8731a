using System.Buffers.Binary;
using System.Text;

namespace Ferry.Machine.Board;

/// <summary>
/// A guest program: an RV64 ELF executable (the same file QEMU boots with -kernel), validated
/// on load, plus its optional configuration block, which Ferry can rewrite by name.
///
/// Configuration block (section ".ferry_config", little-endian):
///   u64 magic = "FERRYCFG"   u32 version = 1   u32 count (&lt;= 16)
///   count x { char name[16] (NUL-padded), u64 value }
/// </summary>
public sealed class GuestImage
{
    public const ulong ConfigMagic = 0x4746_4359_5252_4546; // "FERRYCFG"
    private const int MaxConfigEntries = 16;
    private const int ConfigEntrySize = 24;
    private const int ConfigHeaderSize = 16;

    private readonly byte[] _bytes;
    private readonly int _configOffset;
    private readonly int _configCount;

    private GuestImage(string name, byte[] bytes, ulong entry, IReadOnlyList<LoadSegment> segments, int configOffset, int configCount)
    {
        Name = name;
        _bytes = bytes;
        Entry = entry;
        Segments = segments;
        _configOffset = configOffset;
        _configCount = configCount;
    }

    public string Name { get; }

    public ulong Entry { get; }

    public IReadOnlyList<LoadSegment> Segments { get; }

    /// <summary>The ELF file bytes (with any configuration applied).</summary>
    public ReadOnlySpan<byte> Bytes => _bytes;

    public const int MaxImageSize = 64 << 20;

    public static GuestImage Load(string path) => Parse(Path.GetFileNameWithoutExtension(path), ReadFile(path, path));

    /// <summary>
    /// Reads an image file of at most <see cref="MaxImageSize"/> bytes. The length is checked
    /// first, and the read stops one byte past the limit: a device such as /dev/zero (length 0,
    /// endless) or a growing file is refused without being read whole.
    /// </summary>
    public static byte[] ReadFile(string path, string what)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new GuestImageException($"{what}: no such file");
        }

        if (info.Length > MaxImageSize)
        {
            throw new GuestImageException($"{what}: {info.Length >> 20} MiB is larger than the {MaxImageSize >> 20} MiB image limit");
        }

        using FileStream file = File.OpenRead(path);
        var bytes = new MemoryStream();
        byte[] buffer = new byte[64 << 10];
        int n;
        while ((n = file.Read(buffer, 0, (int)Math.Min(buffer.Length, MaxImageSize + 1 - bytes.Length))) > 0)
        {
            bytes.Write(buffer, 0, n);
            if (bytes.Length > MaxImageSize)
            {
                throw new GuestImageException($"{what}: more than the {MaxImageSize >> 20} MiB image limit (not a regular file of that size)");
            }
        }

        return bytes.ToArray();
    }

    public static GuestImage Parse(string name, byte[] bytes)
    {
        var elf = new ReadOnlySpan<byte>(bytes);
        if (elf.Length < 64 || elf[0] != 0x7F || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
        {
            throw new GuestImageException($"{name}: not an ELF file");
        }

        if (elf[4] != 2 || elf[5] != 1)
        {
            throw new GuestImageException($"{name}: not a 64-bit little-endian ELF (RV64 needs ELFCLASS64, ELFDATA2LSB)");
        }

        ushort type = U16(elf, 16);
        ushort machine = U16(elf, 18);
        if (machine != 0xF3)
        {
            throw new GuestImageException($"{name}: ELF machine {machine} is not RISC-V (243)");
        }

        if (type != 2)
        {
            throw new GuestImageException($"{name}: ELF type {type} is not an executable (ET_EXEC)");
        }

        ulong entry = U64(elf, 24);
        ulong phoff = U64(elf, 32);
        ulong shoff = U64(elf, 40);
        ushort phentsize = U16(elf, 54);
        ushort phnum = U16(elf, 56);
        ushort shentsize = U16(elf, 58);
        ushort shnum = U16(elf, 60);
        ushort shstrndx = U16(elf, 62);

        if (phnum == 0 || phentsize < 56 || phoff > (ulong)elf.Length || (ulong)phnum * phentsize > (ulong)elf.Length - phoff)
        {
            throw new GuestImageException($"{name}: program headers are missing or outside the file");
        }

        var segments = new List<LoadSegment>();
        for (int i = 0; i < phnum; i++)
        {
            int ph = (int)phoff + (i * phentsize);
            if (U32(elf, ph) != 1)
            {
                continue; // only PT_LOAD
            }

            ulong offset = U64(elf, ph + 8);
            ulong paddr = U64(elf, ph + 24);
            ulong filesz = U64(elf, ph + 32);
            ulong memsz = U64(elf, ph + 40);
            if (filesz > memsz || offset > (ulong)elf.Length || filesz > (ulong)elf.Length - offset)
            {
                throw new GuestImageException($"{name}: segment {i} lies outside the file or has filesz > memsz");
            }

            if (memsz != 0)
            {
                segments.Add(new LoadSegment(paddr, memsz, (int)offset, (int)filesz));
            }
        }

        if (segments.Count == 0)
        {
            throw new GuestImageException($"{name}: no loadable segments");
        }

        (int configOffset, int configCount) = FindConfig(name, elf, shoff, shentsize, shnum, shstrndx);
        return new GuestImage(name, bytes, entry, segments, configOffset, configCount);
    }

    /// <summary>The configuration block's entries (empty when the image has none).</summary>
    public IReadOnlyList<KeyValuePair<string, ulong>> Config
    {
        get
        {
            var list = new List<KeyValuePair<string, ulong>>();
            for (int i = 0; i < _configCount; i++)
            {
                int e = _configOffset + ConfigHeaderSize + (i * ConfigEntrySize);
                string key = Encoding.ASCII.GetString(_bytes, e, 16).TrimEnd('\0');
                list.Add(new(key, BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan(e + 16))));
            }

            return list;
        }
    }

    /// <summary>A copy of this image with configuration values replaced by name.</summary>
    public GuestImage WithConfig(IEnumerable<KeyValuePair<string, ulong>> values)
    {
        byte[] copy = (byte[])_bytes.Clone();
        foreach ((string key, ulong value) in values)
        {
            int index = -1;
            for (int i = 0; i < _configCount; i++)
            {
                int e = _configOffset + ConfigHeaderSize + (i * ConfigEntrySize);
                if (Encoding.ASCII.GetString(copy, e, 16).TrimEnd('\0') == key)
                {
                    index = e;
                    break;
                }
            }

            if (index < 0)
            {
                string known = _configCount == 0 ? "none" : string.Join(", ", Config.Select(c => c.Key));
                throw new GuestImageException($"{Name}: no configuration key '{key}' (keys: {known})");
            }

            BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(index + 16), value);
        }

        return new GuestImage(Name, copy, Entry, Segments, _configOffset, _configCount);
    }

    /// <summary>Parses "key=value,key=value" (values decimal or 0x hex).</summary>
    public static IReadOnlyList<KeyValuePair<string, ulong>> ParseConfig(string text)
    {
        var list = new List<KeyValuePair<string, ulong>>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new GuestImageException($"'{part}' is not key=value");
            }

            string v = part[(eq + 1)..];
            bool ok = v.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? ulong.TryParse(v.AsSpan(2), System.Globalization.NumberStyles.HexNumber, null, out ulong n)
                : ulong.TryParse(v, out n);
            if (!ok)
            {
                throw new GuestImageException($"'{v}' is not a number (key {part[..eq]})");
            }

            list.Add(new(part[..eq], n));
        }

        return list;
    }

    private static (int Offset, int Count) FindConfig(string name, ReadOnlySpan<byte> elf, ulong shoff, ushort shentsize, ushort shnum, ushort shstrndx)
    {
        if (shoff == 0 || shnum == 0 || shentsize < 64 || shoff > (ulong)elf.Length || (ulong)shnum * shentsize > (ulong)elf.Length - shoff || shstrndx >= shnum)
        {
            return (0, 0);
        }

        int strHeader = (int)shoff + (shstrndx * shentsize);
        ulong strOffset = U64(elf, strHeader + 24);
        ulong strSize = U64(elf, strHeader + 32);
        if (strOffset > (ulong)elf.Length || strSize > (ulong)elf.Length - strOffset)
        {
            return (0, 0);
        }

        ReadOnlySpan<byte> strtab = elf.Slice((int)strOffset, (int)strSize);
        ReadOnlySpan<byte> wanted = ".ferry_config\0"u8;
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)shoff + (i * shentsize);
            uint nameOffset = U32(elf, sh);
            if (nameOffset >= strtab.Length || !strtab[(int)nameOffset..].StartsWith(wanted))
            {
                continue;
            }

            ulong offset = U64(elf, sh + 24);
            ulong size = U64(elf, sh + 32);
            if (size < ConfigHeaderSize || offset > (ulong)elf.Length || size > (ulong)elf.Length - offset)
            {
                throw new GuestImageException($"{name}: .ferry_config section is truncated");
            }

            if (U64(elf, (int)offset) != ConfigMagic || U32(elf, (int)offset + 8) != 1)
            {
                throw new GuestImageException($"{name}: .ferry_config has a bad magic or version");
            }

            uint count = U32(elf, (int)offset + 12);
            if (count > MaxConfigEntries || ConfigHeaderSize + (count * ConfigEntrySize) > size)
            {
                throw new GuestImageException($"{name}: .ferry_config declares {count} entries, more than it holds");
            }

            return ((int)offset, (int)count);
        }

        return (0, 0);
    }

    private static ushort U16(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);
}

/// <summary>A PT_LOAD segment: physical address, memory size, and the file bytes that fill its start.</summary>
public sealed record LoadSegment(ulong PhysicalAddress, ulong MemorySize, int FileOffset, int FileSize);

/// <summary>A guest image that cannot be loaded: the message is the one line the user sees.</summary>
public sealed class GuestImageException(string message) : Exception(message);
