using System.Buffers.Binary;
using Ferry.Machine.Memory;
using Ferry.Machine.State;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Builds one Pages frame in a buffer it owns and reuses (the page sender's hot path
/// allocates nothing). Layout:
///   u8 phase | u8 0 | u16 count | u32 fault page (0xFFFFFFFF if none)
///   FaultReply only: u32 source queue ns | u32 source link ns (see <see cref="FaultTiming"/>)
///   count x { u32 page | u8 encoding (zero, raw, lz4, delta) | u16 length | bytes }
/// </summary>
public sealed class PageBatchWriter
{
    public const int HeaderSize = 8;
    public const int FaultTimingSize = 8;

    /// <summary>Where a fault reply's source link time goes (stamped by <c>FrameChannel.Send</c>).</summary>
    public const int FaultLinkStampOffset = HeaderSize + 4;
    public const int EntryHeaderSize = 7;
    public const int DefaultMaxPages = 64;
    public const uint NoFault = uint.MaxValue;

    private readonly byte[] _buffer;
    private readonly byte[] _snapshot = new byte[GuestMemory.PageSize];
    private readonly bool _compress;
    private int _position;

    public PageBatchWriter(int maxPages = DefaultMaxPages, bool compress = false)
    {
        MaxPages = maxPages;
        _compress = compress;
        _buffer = new byte[HeaderSize + FaultTimingSize + (maxPages * (EntryHeaderSize + GuestMemory.PageSize))];
        Begin(PagePhase.Live);
    }

    public int MaxPages { get; }

    public int Count { get; private set; }

    public bool IsFull => Count == MaxPages;

    public ReadOnlyMemory<byte> Payload => _buffer.AsMemory(0, _position);

    /// <summary>Bytes of page content in this batch (excluding headers), for accounting.</summary>
    public int ZeroPages { get; private set; }

    /// <summary>Pages of this batch sent as deltas.</summary>
    public int DeltaPages { get; private set; }

    /// <summary>The content of the page last added, exactly as sent (what the receiver now holds).</summary>
    public ReadOnlySpan<byte> LastContent => _snapshot;

    public void Begin(PagePhase phase, uint faultPage = NoFault)
    {
        _buffer[0] = (byte)phase;
        _buffer[1] = 0;
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(4), faultPage);
        _position = HeaderSize;
        if (phase == PagePhase.FaultReply)
        {
            _buffer.AsSpan(HeaderSize, FaultTimingSize).Clear();
            _position += FaultTimingSize;
        }

        Count = 0;
        ZeroPages = 0;
        DeltaPages = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(2), 0);
    }

    /// <summary>A fault reply's time at the source from the request's arrival until the reply was ready to send.</summary>
    public void StampSourceQueue(long nanoseconds)
        => BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(HeaderSize), (uint)Math.Clamp(nanoseconds, 0, uint.MaxValue));

    /// <summary>
    /// Appends a page (zero pages become markers); returns the hash of exactly the bytes sent.
    /// The page may be changing under a running VM: it is copied once, and the encoding and
    /// the hash are both taken from that copy (a torn copy is harmless: the page is dirty and
    /// will be sent again).
    /// </summary>
    public ulong Add(int page, ReadOnlySpan<byte> content) => Add(page, content, default);

    /// <summary>
    /// Appends a page, as the changed bytes against <paramref name="previous"/> (what the receiver
    /// holds: the content last sent) when that is shorter than half a page and the page is not zero.
    /// </summary>
    public ulong Add(int page, ReadOnlySpan<byte> content, ReadOnlySpan<byte> previous)
    {
        content.CopyTo(_snapshot);
        content = _snapshot;
        Span<byte> entry = _buffer.AsSpan(_position);
        (PageEncoding encoding, int length) = (PageEncoding.Zero, 0);
        int delta = previous.IsEmpty || !content.ContainsAnyExcept((byte)0) ? -1 : PageDelta.Encode(previous, content, entry[EntryHeaderSize..]);
        if (delta >= 0)
        {
            (encoding, length) = (PageEncoding.Delta, delta);
            DeltaPages++;
        }
        else
        {
            (encoding, length) = PageCodec.Encode(content, entry[EntryHeaderSize..], _compress);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(entry, (uint)page);
        entry[4] = (byte)encoding;
        BinaryPrimitives.WriteUInt16LittleEndian(entry[5..], (ushort)length);
        _position += EntryHeaderSize + length;
        Count++;
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(2), (ushort)Count);
        if (encoding == PageEncoding.Zero)
        {
            ZeroPages++;
            return 0;
        }

        return PageHash.Of(page, content);
    }
}

/// <summary>Reads a Pages frame, validating every field against the receiver's page count.</summary>
public static class PageBatchReader
{
    /// <summary>The batch's phase and fault page, checked.</summary>
    public static (PagePhase Phase, uint FaultPage) Header(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        byte phase = r.U8();
        r.U8();
        r.U16();
        uint faultPage = r.U32();
        if (phase is < (byte)PagePhase.Live or > (byte)PagePhase.FaultReply)
        {
            throw new ProtocolException($"unknown page phase {phase}");
        }

        return ((PagePhase)phase, faultPage);
    }

    /// <summary>A fault reply's timing at the source (zeros for other phases or a short payload).</summary>
    public static FaultTiming Timing(ReadOnlySpan<byte> payload)
        => payload.Length >= PageBatchWriter.HeaderSize + PageBatchWriter.FaultTimingSize && payload[0] == (byte)PagePhase.FaultReply
            ? new FaultTiming(BinaryPrimitives.ReadUInt32LittleEndian(payload[PageBatchWriter.HeaderSize..]),
                BinaryPrimitives.ReadUInt32LittleEndian(payload[PageBatchWriter.FaultLinkStampOffset..]))
            : default;

    /// <summary>Calls <paramref name="onPage"/> for each page, decoded into <paramref name="scratch"/> (4096 bytes).</summary>
    public static (PagePhase Phase, uint FaultPage, int Count) Read(
        ReadOnlySpan<byte> payload, int pageCount, Span<byte> scratch, PageVisitor onPage, GuestMemory? bases = null)
    {
        var visitor = new DelegateVisitor(onPage);
        return Read(payload, pageCount, scratch, ref visitor, bases);
    }

    /// <summary>
    /// Calls <paramref name="visitor"/> for each page, decoded into <paramref name="scratch"/>
    /// (4096 bytes). A struct visitor makes the receive path allocation-free. A delta page is
    /// applied to its copy in <paramref name="bases"/> (the receiver's memory, while the VM does
    /// not run there); without bases a delta is a protocol error.
    /// </summary>
    public static (PagePhase Phase, uint FaultPage, int Count) Read<TVisitor>(
        ReadOnlySpan<byte> payload, int pageCount, Span<byte> scratch, ref TVisitor visitor, GuestMemory? bases = null)
        where TVisitor : struct, IPageVisitor
    {
        var r = new WireReader(payload);
        byte phase = r.U8();
        if (phase is < (byte)PagePhase.Live or > (byte)PagePhase.FaultReply)
        {
            throw new ProtocolException($"unknown page phase {phase}");
        }

        if (r.U8() != 0)
        {
            throw new ProtocolException("reserved page batch byte is set");
        }

        int count = r.U16();
        uint faultPage = r.U32();
        if (count > 4096)
        {
            throw new ProtocolException($"a batch of {count} pages exceeds the limit");
        }

        if (faultPage != PageBatchWriter.NoFault && faultPage >= (uint)pageCount)
        {
            throw new ProtocolException($"fault page {faultPage} is outside RAM");
        }

        if (phase == (byte)PagePhase.FaultReply)
        {
            r.Bytes(PageBatchWriter.FaultTimingSize);
        }

        for (int i = 0; i < count; i++)
        {
            uint page = r.U32();
            var encoding = (PageEncoding)r.U8();
            int length = r.U16();
            if (page >= (uint)pageCount)
            {
                throw new ProtocolException($"page {page} is outside this VM's {pageCount} pages");
            }

            ReadOnlySpan<byte> data = r.Bytes(length);
            try
            {
                if (encoding == PageEncoding.Delta)
                {
                    if (bases is null)
                    {
                        throw new ProtocolException($"page {page}: a delta where the receiver has no copy to apply it to");
                    }

                    bases.Page((int)page).CopyTo(scratch);
                    PageDelta.Apply(data, scratch);
                }
                else
                {
                    PageCodec.Decode(encoding, data, scratch);
                }
            }
            catch (InvalidDataException e)
            {
                throw new ProtocolException($"page {page}: {e.Message}");
            }

            visitor.Visit((int)page, encoding == PageEncoding.Zero, scratch);
        }

        r.End();
        return ((PagePhase)phase, faultPage, count);
    }
}

public delegate void PageVisitor(int page, bool zero, ReadOnlySpan<byte> content);

/// <summary>What a page batch reader calls for each page (a struct, so nothing is allocated per batch).</summary>
public interface IPageVisitor
{
    void Visit(int page, bool zero, ReadOnlySpan<byte> content);
}

internal readonly struct DelegateVisitor(PageVisitor onPage) : IPageVisitor
{
    public void Visit(int page, bool zero, ReadOnlySpan<byte> content) => onPage(page, zero, content);
}

/// <summary>
/// A fault reply's time at the source, carried in its batch header: from the request's arrival
/// until the reply was ready (claim, copy, encode: <see cref="QueueNs"/>), and from then until it
/// went out on the connection (waiting for the link, its own transmission time on the emulated
/// link, the send lock: <see cref="LinkNs"/>). The destination subtracts both from its round trip
/// to get the network's share without a common clock.
/// </summary>
public readonly record struct FaultTiming(uint QueueNs, uint LinkNs);
