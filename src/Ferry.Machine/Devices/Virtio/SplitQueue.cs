using Ferry.Machine.Memory;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>One buffer of a descriptor chain: guest-physical address, length, and whether the device writes it.</summary>
public readonly record struct Segment(ulong Address, uint Length, bool DeviceWrites);

/// <summary>
/// A split virtqueue (virtio 1.x, 2.7) seen from the device:
///
///   descriptor table  num x { u64 addr | u32 len | u16 flags (NEXT 1, WRITE 2, INDIRECT 4) | u16 next }
///   driver (avail)    u16 flags (NO_INTERRUPT 1) | u16 idx | num x u16 ring | u16 used_event
///   device (used)     u16 flags | u16 idx | num x { u32 id | u32 len } | u16 avail_event
///
/// The device keeps its own position in the avail ring (<see cref="LastAvail"/>) and the used
/// index it last published (<see cref="UsedIndex"/>); both are device state and cross in a
/// migration. <see cref="TryPeek"/> reads the next chain (validating it as hostile input and
/// acquiring every page it names, so that acting on it cannot wait), <see cref="Push"/> retires
/// it into the used ring. EVENT_IDX is not offered: the driver's NO_INTERRUPT flag decides.
/// </summary>
public sealed class SplitQueue
{
    public const ushort DescNext = 1, DescWrite = 2, DescIndirect = 4;
    public const ushort AvailNoInterrupt = 1;

    /// <summary>Longest chain (direct plus indirect) a request may have; longer ones are refused as loops.</summary>
    public const int MaxChain = 1024;

    /// <summary>Pages <see cref="AddDmaPages"/> names per queue at most (16 MiB).</summary>
    public const int MaxDmaPages = 4096;

    private readonly Segment[] _segments = new Segment[MaxChain];

    public SplitQueue(ushort maxSize)
    {
        MaxSize = maxSize;
    }

    public ushort MaxSize { get; }

    public ushort Size { get; set; }

    public bool Ready { get; set; }

    public ulong DescAddress { get; set; }

    public ulong DriverAddress { get; set; }

    public ulong DeviceAddress { get; set; }

    public ushort LastAvail { get; set; }

    public ushort UsedIndex { get; set; }

    /// <summary>A notify could not be served (a wait for an absent page was cancelled): serve it at the next run boundary.</summary>
    public bool KickPending { get; set; }

    /// <summary>The chain <see cref="TryPeek"/> read: its segments in order.</summary>
    public ReadOnlySpan<Segment> Segments => _segments.AsSpan(0, SegmentCount);

    public int SegmentCount { get; private set; }

    public ushort Head { get; private set; }

    /// <summary>Bytes the device may read (driver-written segments), and bytes it may write.</summary>
    public ulong ReadableLength { get; private set; }

    public ulong WritableLength { get; private set; }

    public void Reset()
    {
        Size = 0;
        Ready = false;
        DescAddress = DriverAddress = DeviceAddress = 0;
        LastAvail = UsedIndex = 0;
        KickPending = false;
        SegmentCount = 0;
    }

    /// <summary>
    /// Adds to <paramref name="pages"/> every page this queue's device will touch next: its three
    /// rings and the buffers of the chains the driver has made available and the device has not
    /// yet used (a network card's posted receive buffers, say). For a migration's source, whose
    /// memory is all present: the destination then has these pages before its devices need them.
    /// Reads the rings as they are, without acquiring anything; a malformed ring or chain ends the
    /// walk (the device reports it when it gets there), so a hostile guest costs at most
    /// <see cref="MaxChain"/> descriptors per chain and <see cref="MaxDmaPages"/> pages per queue.
    /// </summary>
    public void AddDmaPages(GuestMemory memory, PageBitmap pages) => AddDmaPages(memory, pages, int.MaxValue);

    /// <summary>As <see cref="AddDmaPages(GuestMemory, PageBitmap)"/>, for the next <paramref name="maxChains"/> available chains only (the device uses them in order).</summary>
    public void AddDmaPages(GuestMemory memory, PageBitmap pages, int maxChains)
    {
        if (!Ready || Size == 0)
        {
            return;
        }

        int budget = MaxDmaPages;
        AddRange(memory, pages, DescAddress, 16UL * Size, ref budget);
        AddRange(memory, pages, DriverAddress, 6 + (2UL * Size), ref budget);
        AddRange(memory, pages, DeviceAddress, 6 + (8UL * Size), ref budget);
        if (!TryRead(memory, DriverAddress + 2, 2, out ulong availIdx))
        {
            return;
        }

        ushort pending = (ushort)((ushort)availIdx - LastAvail);
        for (ushort i = 0; i < pending && i < Size && i < maxChains; i++)
        {
            if (!TryRead(memory, DriverAddress + 4 + (2UL * (ulong)((ushort)(LastAvail + i) % Size)), 2, out ulong head) || head >= Size)
            {
                return;
            }

            ulong table = DescAddress;
            ulong tableSize = Size;
            ulong index = head;
            bool indirect = false;
            for (int visited = 0; visited < MaxChain; visited++)
            {
                ulong at = table + (16UL * index);
                if (!TryRead(memory, at, 8, out ulong addr) || !TryRead(memory, at + 8, 4, out ulong len) || !TryRead(memory, at + 12, 2, out ulong flags) || !TryRead(memory, at + 14, 2, out ulong next))
                {
                    break;
                }

                if ((flags & DescIndirect) != 0)
                {
                    if (indirect || len == 0 || (len & 15) != 0 || len / 16 > MaxChain)
                    {
                        break;
                    }

                    AddRange(memory, pages, addr, len, ref budget);
                    indirect = true;
                    table = addr;
                    tableSize = len / 16;
                    index = 0;
                    continue;
                }

                AddRange(memory, pages, addr, len, ref budget);
                if (budget <= 0)
                {
                    return;
                }

                if ((flags & DescNext) == 0 || next >= tableSize)
                {
                    break;
                }

                index = next;
            }
        }
    }

    private static bool TryRead(GuestMemory memory, ulong address, int size, out ulong value)
    {
        value = 0;
        if (!InRam(memory, address, (ulong)size))
        {
            return false;
        }

        Span<byte> b = stackalloc byte[8];
        memory.ReadPhysical(address, b[..size]);
        value = BitConverter.ToUInt64(b);
        return true;
    }

    private static bool InRam(GuestMemory memory, ulong address, ulong length)
    {
        ulong offset = address - memory.BaseAddress;
        return address >= memory.BaseAddress && offset <= memory.Size && length <= memory.Size - offset;
    }

    private static void AddRange(GuestMemory memory, PageBitmap pages, ulong address, ulong length, ref int budget)
    {
        if (length == 0 || !InRam(memory, address, length))
        {
            return;
        }

        int last = memory.PageOf(address + length - 1);
        for (int p = memory.PageOf(address); p <= last && budget > 0; p++, budget--)
        {
            pages.Set(p);
        }
    }

    /// <summary>Why the queue's layout cannot be used, or null: checked when the driver sets it ready and on restore.</summary>
    public string? Validate(GuestDma dma)
    {
        if (Size == 0 || Size > MaxSize || (Size & (Size - 1)) != 0)
        {
            return $"queue size {Size} is not a power of two up to {MaxSize}";
        }

        if ((DescAddress & 15) != 0 || (DriverAddress & 1) != 0 || (DeviceAddress & 3) != 0)
        {
            return $"queue rings at 0x{DescAddress:x}/0x{DriverAddress:x}/0x{DeviceAddress:x} are misaligned";
        }

        if (!dma.InRam(DescAddress, 16UL * Size) || !dma.InRam(DriverAddress, 6 + (2UL * Size)) || !dma.InRam(DeviceAddress, 6 + (8UL * Size)))
        {
            return $"queue rings at 0x{DescAddress:x}/0x{DriverAddress:x}/0x{DeviceAddress:x} (size {Size}) are outside RAM";
        }

        return null;
    }

    /// <summary>
    /// Reads the next available chain without consuming it; false when the driver has made none
    /// available. Throws <see cref="VirtioDriverException"/> on a malformed ring or chain and
    /// <see cref="DmaCancelledException"/> if a page wait was cancelled.
    /// </summary>
    public bool TryPeek(GuestDma dma)
    {
        ushort availIdx = dma.ReadU16(DriverAddress + 2);
        ushort pending = (ushort)(availIdx - LastAvail);
        if (pending == 0)
        {
            return false;
        }

        if (pending > Size)
        {
            throw new VirtioDriverException($"avail index {availIdx} is {pending} ahead of the device's {LastAvail}, more than the queue's {Size}");
        }

        ushort head = dma.ReadU16(DriverAddress + 4 + (2UL * (ulong)(LastAvail % Size)));
        if (head >= Size)
        {
            throw new VirtioDriverException($"head descriptor {head} is outside the queue of {Size}");
        }

        Head = head;
        SegmentCount = 0;
        ReadableLength = WritableLength = 0;
        ulong table = DescAddress;
        uint tableSize = Size;
        uint index = head;
        bool indirect = false;
        int visited = 0;
        while (true)
        {
            if (++visited > MaxChain || (!indirect && visited > Size))
            {
                throw new VirtioDriverException($"descriptor chain from {head} loops or exceeds {Math.Min(MaxChain, (int)Size)} descriptors");
            }

            ulong at = table + (16UL * index);
            ulong addr = dma.ReadU64(at);
            uint len = dma.ReadU32(at + 8);
            ushort flags = dma.ReadU16(at + 12);
            ushort next = dma.ReadU16(at + 14);
            if ((flags & DescIndirect) != 0)
            {
                if (indirect || SegmentCount != 0 || (flags & DescNext) != 0)
                {
                    throw new VirtioDriverException("an indirect descriptor is nested, follows others or has NEXT set");
                }

                if (len == 0 || (len & 15) != 0 || len / 16 > MaxChain || !dma.InRam(addr, len))
                {
                    throw new VirtioDriverException($"indirect table at 0x{addr:x} of {len} bytes is malformed or outside RAM");
                }

                indirect = true;
                table = addr;
                tableSize = len / 16;
                index = 0;
                visited = 0;
                continue;
            }

            bool writes = (flags & DescWrite) != 0;
            if (!dma.InRam(addr, len))
            {
                throw new VirtioDriverException($"descriptor {index} buffer 0x{addr:x}+{len} is outside RAM");
            }

            if (!writes && WritableLength != 0)
            {
                throw new VirtioDriverException($"descriptor {index} is device-readable after device-writable ones");
            }

            _segments[SegmentCount++] = new Segment(addr, len, writes);
            if (writes)
            {
                WritableLength += len;
            }
            else
            {
                ReadableLength += len;
            }

            if ((flags & DescNext) == 0)
            {
                break;
            }

            if (next >= tableSize)
            {
                throw new VirtioDriverException($"descriptor {index} chains to {next}, outside its table of {tableSize}");
            }

            index = next;
        }

        // Everything the device will touch is present before it acts: the buffers and the used slot.
        foreach (Segment s in Segments)
        {
            dma.Acquire(s.Address, s.Length);
        }

        dma.Acquire(DeviceAddress, 4 + (8UL * Size));
        return true;
    }

    /// <summary>Retires the chain last peeked: writes its used element and publishes the new used index.</summary>
    public void Push(GuestDma dma, uint written)
    {
        ulong elem = DeviceAddress + 4 + (8UL * (ulong)(UsedIndex % Size));
        dma.WriteU32(elem, Head);
        dma.WriteU32(elem + 4, written);
        UsedIndex++;
        LastAvail++;
        dma.WriteU16(DeviceAddress + 2, UsedIndex);
    }

    /// <summary>Whether the driver wants an interrupt for used buffers (avail.flags NO_INTERRUPT clear).</summary>
    public bool DriverWantsInterrupt(GuestDma dma) => (dma.ReadU16(DriverAddress) & AvailNoInterrupt) == 0;

    /// <summary>Copies readable bytes of the chain from logical offset <paramref name="offset"/> into <paramref name="destination"/>; returns the count copied.</summary>
    public int ReadChain(GuestDma dma, ulong offset, Span<byte> destination)
    {
        int copied = 0;
        foreach (Segment s in Segments)
        {
            if (s.DeviceWrites || copied == destination.Length)
            {
                break;
            }

            if (offset >= s.Length)
            {
                offset -= s.Length;
                continue;
            }

            int n = (int)Math.Min(s.Length - offset, (ulong)(destination.Length - copied));
            dma.Read(s.Address + offset, destination.Slice(copied, n));
            copied += n;
            offset = 0;
        }

        return copied;
    }

    /// <summary>Copies <paramref name="source"/> into the chain's writable bytes from logical offset <paramref name="offset"/>; returns the count copied.</summary>
    public int WriteChain(GuestDma dma, ulong offset, ReadOnlySpan<byte> source)
    {
        int copied = 0;
        foreach (Segment s in Segments)
        {
            if (!s.DeviceWrites)
            {
                continue;
            }

            if (copied == source.Length)
            {
                break;
            }

            if (offset >= s.Length)
            {
                offset -= s.Length;
                continue;
            }

            int n = (int)Math.Min(s.Length - offset, (ulong)(source.Length - copied));
            dma.Write(s.Address + offset, source.Slice(copied, n));
            copied += n;
            offset = 0;
        }

        return copied;
    }
}
