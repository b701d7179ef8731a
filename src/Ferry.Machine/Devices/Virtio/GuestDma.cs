using System.Buffers.Binary;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// A device's view of guest RAM (its DMA): every access is bounds-checked against RAM, waits for
/// absent pages exactly as the hart's slow path does (<see cref="GuestMemory.WaitUntilPresent"/>,
/// so on a post-copy or hybrid destination the remote pager fetches them), marks pages read as
/// accessed and pages written as populated, dirty and accessed (<see cref="GuestMemory.NoteWrite"/>,
/// which also drops decoded code). Devices use it on the machine's thread only (at a queue notify
/// or a run boundary), so it never races the hart.
///
/// A wait the machine cancels (a stop) throws <see cref="DmaCancelledException"/>: the queue leaves
/// the request where it was and retries it at the next run boundary. To keep requests free of
/// half-done side effects, a queue acquires every page of a request (rings, descriptors, buffers)
/// before the device acts on it (<see cref="Acquire"/>); nothing after that can wait.
/// </summary>
public sealed unsafe class GuestDma
{
    private readonly GuestMemory _memory;
    private readonly Func<CancellationToken> _cancellation;

    public GuestDma(GuestMemory memory, Func<CancellationToken> cancellation)
    {
        _memory = memory;
        _cancellation = cancellation;
    }

    public GuestMemory Memory => _memory;

    /// <summary>True when [address, address + length) lies inside RAM (no wrap-around).</summary>
    public bool InRam(ulong address, ulong length)
    {
        ulong offset = address - _memory.BaseAddress;
        return address >= _memory.BaseAddress && offset <= _memory.Size && length <= _memory.Size - offset;
    }

    /// <summary>Waits until every page of the range is present. The range must be in RAM.</summary>
    public void Acquire(ulong address, ulong length)
    {
        if (length == 0)
        {
            return;
        }

        int first = _memory.PageOf(address), last = _memory.PageOf(address + length - 1);
        for (int p = first; p <= last; p++)
        {
            if (_memory.Absent.Get(p) && !_memory.WaitUntilPresent(p, _cancellation()))
            {
                throw new DmaCancelledException();
            }
        }
    }

    /// <summary>The bytes of a range the device reads (acquired, marked accessed). Valid until the machine runs again.</summary>
    public ReadOnlySpan<byte> ReadSpan(ulong address, int length)
    {
        Check(address, (ulong)length);
        Acquire(address, (ulong)length);
        MarkAccessed(address, (ulong)length);
        return new ReadOnlySpan<byte>(_memory.Host + (address - _memory.BaseAddress), length);
    }

    /// <summary>The bytes of a range the device writes (acquired, marked written). Valid until the machine runs again.</summary>
    public Span<byte> WriteSpan(ulong address, int length)
    {
        Check(address, (ulong)length);
        Acquire(address, (ulong)length);
        if (length > 0)
        {
            int first = _memory.PageOf(address), last = _memory.PageOf(address + (ulong)length - 1);
            for (int p = first; p <= last; p++)
            {
                _memory.NoteWrite(p);
            }
        }

        return new Span<byte>(_memory.Host + (address - _memory.BaseAddress), length);
    }

    public void Read(ulong address, Span<byte> destination) => ReadSpan(address, destination.Length).CopyTo(destination);

    public void Write(ulong address, ReadOnlySpan<byte> source) => source.CopyTo(WriteSpan(address, source.Length));

    public ushort ReadU16(ulong address) => BinaryPrimitives.ReadUInt16LittleEndian(ReadSpan(address, 2));

    public uint ReadU32(ulong address) => BinaryPrimitives.ReadUInt32LittleEndian(ReadSpan(address, 4));

    public ulong ReadU64(ulong address) => BinaryPrimitives.ReadUInt64LittleEndian(ReadSpan(address, 8));

    public void WriteU16(ulong address, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(WriteSpan(address, 2), value);

    public void WriteU32(ulong address, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(WriteSpan(address, 4), value);

    private void MarkAccessed(ulong address, ulong length)
    {
        if (length == 0)
        {
            return;
        }

        int first = _memory.PageOf(address), last = _memory.PageOf(address + length - 1);
        for (int p = first; p <= last; p++)
        {
            _memory.Accessed.Set(p);
        }
    }

    private void Check(ulong address, ulong length)
    {
        if (!InRam(address, length))
        {
            throw new VirtioDriverException($"guest buffer 0x{address:x}+{length} is outside RAM");
        }
    }
}

/// <summary>The machine cancelled a device's wait for an absent page (it is stopping): retry the request later.</summary>
public sealed class DmaCancelledException : Exception
{
    public DmaCancelledException()
        : base("a device's wait for an absent page was cancelled")
    {
    }
}

/// <summary>
/// The guest drove a device into an error (a descriptor outside RAM, a loop in a chain, a bad
/// queue size...): the device sets DEVICE_NEEDS_RESET and logs it; the host carries on.
/// </summary>
public sealed class VirtioDriverException(string message) : Exception(message);
