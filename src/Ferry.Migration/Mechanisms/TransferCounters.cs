using Ferry.Migration.Protocol;

namespace Ferry.Migration.Mechanisms;

/// <summary>What the source has put on the wire, by phase (updated atomically; read by progress and the report).</summary>
public sealed class TransferCounters
{
    private readonly long[] _bytes = new long[5];
    private readonly long[] _pages = new long[5];
    private long _zeroPages;
    private long _resentPages;
    private long _controlBytes;
    private long _deltaPages;

    public void AddPages(PagePhase phase, int pages, int zeroPages, int resent, int bytes)
    {
        Interlocked.Add(ref _bytes[(int)phase], bytes);
        Interlocked.Add(ref _pages[(int)phase], pages);
        Interlocked.Add(ref _zeroPages, zeroPages);
        Interlocked.Add(ref _resentPages, resent);
    }

    public void AddDeltaPages(int pages) => Interlocked.Add(ref _deltaPages, pages);

    /// <summary>Pages sent again as only their changed bytes.</summary>
    public long DeltaPages => Interlocked.Read(ref _deltaPages);

    public void AddControl(int bytes) => Interlocked.Add(ref _controlBytes, bytes);

    public long Bytes(PagePhase phase) => Interlocked.Read(ref _bytes[(int)phase]);

    public long Pages(PagePhase phase) => Interlocked.Read(ref _pages[(int)phase]);

    public long ZeroPages => Interlocked.Read(ref _zeroPages);

    public long ResentPages => Interlocked.Read(ref _resentPages);

    public long ControlBytes => Interlocked.Read(ref _controlBytes);

    public long TotalPageBytes => Bytes(PagePhase.Live) + Bytes(PagePhase.Pause) + Bytes(PagePhase.Push) + Bytes(PagePhase.FaultReply);

    public long TotalPages => Pages(PagePhase.Live) + Pages(PagePhase.Pause) + Pages(PagePhase.Push) + Pages(PagePhase.FaultReply);
}
