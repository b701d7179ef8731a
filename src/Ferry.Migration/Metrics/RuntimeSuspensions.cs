using System.Diagnostics;
using System.Diagnostics.Tracing;

namespace Ferry.Migration.Metrics;

/// <summary>
/// Every stop of this process's managed threads by the .NET runtime (a garbage collection, or
/// the runtime's other stop-the-world work: tiered compilation's call-counting cleanup, code
/// patching), read from the runtime's own events (GCSuspendEEBegin and GCRestartEEEnd of
/// Microsoft-Windows-DotNETRuntime, GC keyword, informational level). While one lasts the vCPU,
/// the fault threads and the receivers all stand still, whatever their priority, so a migration's
/// report names them beside the stalls they may explain.
/// </summary>
/// <remarks>
/// The runtime delivers its events to an in-process listener asynchronously (within about a
/// second), so a window is read once it has been closed for a while (the destination reads its own
/// at its final report, 500 ms after completion). The record is a ring of the last
/// <see cref="Capacity"/> suspensions; nothing is allocated per event beyond what the runtime's
/// dispatcher allocates itself.
/// </remarks>
public sealed class RuntimeSuspensions : EventListener
{
    private const string RuntimeProvider = "Microsoft-Windows-DotNETRuntime";
    private const int SuspendBegin = 9;   // GCSuspendEEBegin_V1: Reason, Count, ClrInstanceID
    private const int GcStart = 1;        // GCStart_V2: Count, Depth, Reason, Type, ...
    private const int RestartEnd = 3;     // GCRestartEEEnd_V1
    private const EventKeywords GcKeyword = (EventKeywords)0x1;

    /// <summary>How many suspensions are remembered.</summary>
    public const int Capacity = 4096;

    private static readonly Lazy<RuntimeSuspensions> Instance = new(() => new RuntimeSuspensions());

    // Field initialisers run before EventListener's constructor, which may already call OnEventSourceCreated.
    private readonly object _gate = new();
    private readonly long[] _begin = new long[Capacity];
    private readonly long[] _end = new long[Capacity];
    private readonly int[] _reason = new int[Capacity];
    private readonly int[] _generation = new int[Capacity];
    private long _count;
    private long _openBegin = -1;
    private int _openReason;
    private int _openGeneration = -1;

    private RuntimeSuspensions()
    {
    }

    /// <summary>The process's listener, started on first use (a host agent starts it at once).</summary>
    public static RuntimeSuspensions Process => Instance.Value;

    /// <summary>The runtime's reasons that are a garbage collection (SUSPEND_FOR_GC, SUSPEND_FOR_GC_PREP).</summary>
    private static bool IsGc(int reason) => reason is 1 or 6;

    /// <summary>Suspensions that overlap the window [<paramref name="from"/>, <paramref name="to"/>] (Stopwatch timestamps), clipped to it.</summary>
    public RuntimeSuspensionReport Summarize(long from, long to)
    {
        long count = 0, gcCount = 0, fullCount = 0;
        double totalMs = 0, maxMs = 0, gcMs = 0;
        lock (_gate)
        {
            long first = Math.Max(0, _count - Capacity);
            for (long i = first; i < _count; i++)
            {
                int slot = (int)(i % Capacity);
                long begin = Math.Max(_begin[slot], from), end = Math.Min(_end[slot], to);
                if (end <= begin)
                {
                    continue;
                }

                double ms = (end - begin) * 1000.0 / Stopwatch.Frequency;
                count++;
                totalMs += ms;
                maxMs = Math.Max(maxMs, ms);
                if (IsGc(_reason[slot]))
                {
                    gcCount++;
                    gcMs += ms;
                    fullCount += _generation[slot] >= 2 ? 1 : 0;
                }
            }
        }

        return new RuntimeSuspensionReport(count, totalMs, maxMs, gcCount, gcMs) { FullGcCount = fullCount };
    }

    /// <summary>Records one suspension (the listener's path; also how tests feed it); <paramref name="generation"/>: the collection's, -1 for none.</summary>
    internal void Record(long begin, long end, int reason, int generation = -1)
    {
        lock (_gate)
        {
            int slot = (int)(_count % Capacity);
            _begin[slot] = begin;
            _end[slot] = end;
            _reason[slot] = reason;
            _generation[slot] = generation;
            _count++;
        }
    }

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == RuntimeProvider)
        {
            EnableEvents(eventSource, EventLevel.Informational, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        switch (e.EventId)
        {
            case SuspendBegin:
                _openBegin = ToTimestamp(e.TimeStamp);
                _openReason = Field(e, 0);
                _openGeneration = -1;
                break;
            case GcStart:
                _openGeneration = Math.Max(_openGeneration, Field(e, 1));
                break;
            case RestartEnd when _openBegin >= 0:
                Record(_openBegin, Math.Max(_openBegin, ToTimestamp(e.TimeStamp)), _openReason, _openGeneration);
                _openBegin = -1;
                break;
        }
    }

    private static int Field(EventWrittenEventArgs e, int index)
        => e.Payload is { } payload && payload.Count > index && payload[index] is IConvertible value ? value.ToInt32(null) : -1;

    // The events carry wall-clock times; the migration's clocks are Stopwatch timestamps.
    private static long ToTimestamp(DateTime utc)
    {
        long nowTs = Stopwatch.GetTimestamp();
        TimeSpan ago = DateTime.UtcNow - utc.ToUniversalTime();
        return nowTs - (long)(ago.TotalSeconds * Stopwatch.Frequency);
    }
}

/// <summary>
/// The runtime's stops of every managed thread in one process over a window: how many, their total
/// and longest, and how many of them (and how long) were garbage collections; the rest are the
/// runtime's other stop-the-world work (tiered compilation, code patching).
/// </summary>
public sealed record RuntimeSuspensionReport(long Count, double TotalMs, double MaxMs, long GcCount, double GcMs)
{
    /// <summary>Of the garbage collections, those of generation 2 (full collections).</summary>
    public long FullGcCount { get; init; }
}

/// <summary>
/// The JIT's work in one process over a window (<see cref="System.Runtime.JitInfo"/>, every
/// thread): methods compiled and the time spent compiling them. A host whose migration code is
/// still being compiled (or tiered up, or compiled on stack replacement) during a move spends
/// that CPU beside the guest, the push and the fault path, and a thread that compiles on its
/// own path stalls for it.
/// </summary>
public sealed record JitActivity(long Methods, double Ms)
{
    /// <summary>The process's counters now, to pass to <see cref="Since"/> later.</summary>
    public static JitMark Mark() => new(System.Runtime.JitInfo.GetCompiledMethodCount(), System.Runtime.JitInfo.GetCompilationTime());

    /// <summary>What the JIT did since <paramref name="start"/>.</summary>
    public static JitActivity Since(JitMark start)
    {
        JitMark now = Mark();
        return new(now.Methods - start.Methods, (now.Time - start.Time).TotalMilliseconds);
    }
}

/// <summary>The JIT's counters at one moment (<see cref="JitActivity.Mark"/>).</summary>
public readonly record struct JitMark(long Methods, TimeSpan Time);
