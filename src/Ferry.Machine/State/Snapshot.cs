using System.Buffers.Binary;
using System.IO.Hashing;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;

namespace Ferry.Machine.State;

/// <summary>
/// Snapshot files: the whole machine, saved and restored exactly.
///
///   header   "FERRYSNP" | u16 format version | u16 0 | u32 flags (0) | u64 payload length
///   payload  u32 state length | machine state (StateCodec)
///            u32 page count | page count x { u32 page index | u8 encoding | u16 length | bytes }
///   trailer  u64 CRC-64 (ECMA-182, System.IO.Hashing.Crc64) of header and payload
///
/// Only non-zero pages are stored (LZ4 where it pays). Loading checks, before touching any
/// machine: size limits, magic, version, the checksum; then every field against the limits it
/// implies. A refused file leaves nothing behind.
/// </summary>
public static class Snapshot
{
    public const ushort FormatVersion = 1;
    public const int HeaderSize = 24;
    private static readonly byte[] Magic = "FERRYSNP"u8.ToArray();

    public static void Save(VirtMachine machine, Stream output, bool compress = true)
    {
        byte[] state = StateCodec.Encode(machine.SaveState());
        GuestMemory memory = machine.Memory;
        using var payload = new MemoryStream();
        Span<byte> buffer = new byte[GuestMemory.PageSize];
        Span<byte> u32 = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)state.Length);
        payload.Write(u32);
        payload.Write(state);

        var pages = new List<int>();
        foreach (int page in memory.Populated.EnumerateSet())
        {
            if (memory.Page(page).ContainsAnyExcept((byte)0))
            {
                pages.Add(page);
            }
        }

        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)pages.Count);
        payload.Write(u32);
        Span<byte> pageHeader = stackalloc byte[7];
        foreach (int page in pages)
        {
            (PageEncoding encoding, int length) = PageCodec.Encode(memory.Page(page), buffer, compress);
            BinaryPrimitives.WriteUInt32LittleEndian(pageHeader, (uint)page);
            pageHeader[4] = (byte)encoding;
            BinaryPrimitives.WriteUInt16LittleEndian(pageHeader[5..], (ushort)length);
            payload.Write(pageHeader);
            payload.Write(buffer[..length]);
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], FormatVersion);
        BinaryPrimitives.WriteUInt64LittleEndian(header[16..], (ulong)payload.Length);
        var crc = new Crc64();
        crc.Append(header);
        crc.Append(payload.GetBuffer().AsSpan(0, (int)payload.Length));
        output.Write(header);
        output.Write(payload.GetBuffer(), 0, (int)payload.Length);
        Span<byte> trailer = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(trailer, crc.GetCurrentHashAsUInt64());
        output.Write(trailer);
    }

    public static void Save(VirtMachine machine, string path)
    {
        string temp = path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            Save(machine, file);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Builds a new machine from a snapshot; throws <see cref="SnapshotException"/> if the file is refused.</summary>
    public static VirtMachine Load(byte[] file, ConsoleLog? console = null, MachineDevices? devices = null)
    {
        ReadOnlySpan<byte> data = file;
        if (data.Length < HeaderSize + 8)
        {
            throw new SnapshotException($"snapshot is truncated ({data.Length} bytes, the header alone is {HeaderSize + 8})");
        }

        if (!data[..8].SequenceEqual(Magic))
        {
            throw new SnapshotException("not a Ferry snapshot (bad magic)");
        }

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(data[8..]);
        if (version != FormatVersion)
        {
            throw new SnapshotException($"snapshot format version {version} is not supported (this Ferry reads version {FormatVersion})");
        }

        ulong payloadLength = BinaryPrimitives.ReadUInt64LittleEndian(data[16..]);
        if (payloadLength > (ulong)(data.Length - HeaderSize - 8))
        {
            throw new SnapshotException($"snapshot is truncated: header declares {payloadLength} payload bytes, file holds {data.Length - HeaderSize - 8}");
        }

        if (payloadLength != (ulong)(data.Length - HeaderSize - 8))
        {
            throw new SnapshotException("snapshot has trailing bytes after its checksum");
        }

        var crc = new Crc64();
        crc.Append(data[..(HeaderSize + (int)payloadLength)]);
        ulong expected = BinaryPrimitives.ReadUInt64LittleEndian(data[(HeaderSize + (int)payloadLength)..]);
        if (crc.GetCurrentHashAsUInt64() != expected)
        {
            throw new SnapshotException("snapshot checksum mismatch (the file is corrupt)");
        }

        ReadOnlySpan<byte> payload = data.Slice(HeaderSize, (int)payloadLength);
        try
        {
            uint stateLength = ReadU32(ref payload);
            if (stateLength > StateCodec.MaxEncodedSize || stateLength > payload.Length)
            {
                throw new SnapshotException($"snapshot machine state length {stateLength} is out of range");
            }

            MachineState state = StateCodec.Decode(payload[..(int)stateLength]);
            payload = payload[(int)stateLength..];
            if (state.Config.MemorySize == 0 || state.Config.MemorySize > GuestMemory.MaxSize || (state.Config.MemorySize & GuestMemory.PageMask) != 0)
            {
                throw new SnapshotException($"snapshot memory size {state.Config.MemorySize} is invalid");
            }

            var machine = new VirtMachine(state.Config, console, devices);
            try
            {
                RestorePages(machine.Memory, ref payload);
                machine.RestoreState(state);
                return machine;
            }
            catch
            {
                machine.Dispose();
                throw;
            }
        }
        catch (InvalidDataException e)
        {
            throw new SnapshotException("snapshot is invalid: " + e.Message);
        }
        catch (ArgumentException e)
        {
            throw new SnapshotException("snapshot is invalid: " + e.Message);
        }
    }

    public static VirtMachine Load(string path, ConsoleLog? console = null, MachineDevices? devices = null)
    {
        if (!File.Exists(path))
        {
            throw new SnapshotException($"{path}: no such file");
        }

        var length = new FileInfo(path).Length;
        if (length > (long)(GuestMemory.MaxSize + (64UL << 20)))
        {
            throw new SnapshotException($"{path}: {length} bytes exceeds the snapshot size limit");
        }

        // Read the length the file system reports, no more: a device such as /dev/zero (length 0,
        // endless) is then an empty, truncated snapshot rather than an endless read.
        byte[] data = new byte[length];
        using (FileStream file = File.OpenRead(path))
        {
            int read = file.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
            if (read != data.Length)
            {
                throw new SnapshotException($"{path}: the file shrank while it was read");
            }
        }

        return Load(data, console, devices);
    }

    private static void RestorePages(GuestMemory memory, ref ReadOnlySpan<byte> payload)
    {
        uint count = ReadU32(ref payload);
        if (count > (uint)memory.PageCount)
        {
            throw new SnapshotException($"snapshot holds {count} pages, the machine has {memory.PageCount}");
        }

        Span<byte> page = new byte[GuestMemory.PageSize];
        int previous = -1;
        for (uint i = 0; i < count; i++)
        {
            if (payload.Length < 7)
            {
                throw new InvalidDataException("page table is truncated");
            }

            int index = (int)BinaryPrimitives.ReadUInt32LittleEndian(payload);
            var encoding = (PageEncoding)payload[4];
            int length = BinaryPrimitives.ReadUInt16LittleEndian(payload[5..]);
            payload = payload[7..];
            if (index <= previous || index >= memory.PageCount)
            {
                throw new InvalidDataException($"page index {index} is out of order or outside RAM");
            }

            if (length > payload.Length)
            {
                throw new InvalidDataException($"page {index} is truncated");
            }

            PageCodec.Decode(encoding, payload[..length], page);
            payload = payload[length..];
            memory.WritePhysical(memory.BaseAddress + ((ulong)index << GuestMemory.PageShift), page);
            previous = index;
        }

        if (!payload.IsEmpty)
        {
            throw new InvalidDataException($"{payload.Length} unexpected bytes after the last page");
        }

        memory.Dirty.ClearAll();
        memory.Accessed.ClearAll();
    }

    private static uint ReadU32(ref ReadOnlySpan<byte> span)
    {
        if (span.Length < 4)
        {
            throw new InvalidDataException("unexpected end of payload");
        }

        uint v = BinaryPrimitives.ReadUInt32LittleEndian(span);
        span = span[4..];
        return v;
    }
}

/// <summary>A snapshot that cannot be loaded: the message is the one line the user sees.</summary>
public sealed class SnapshotException(string message) : Exception(message);
