using System.Diagnostics;
using Ferry.Migration.Mechanisms;

namespace Ferry.Migration.Metrics;

/// <summary>
/// Where each network fault's time went, stage by stage, as the destination saw it:
/// <code>
///  hart blocks ─request─► request to the kernel ─┬─ network (out) ─► source receives ─sourceQueue─► reply ready
///                                           │                                                   │ sourceLink
///  hart runs ◄─resume─ page installed ◄─install─ reply received ◄─ network (back) ◄──────────────┘
/// </code>
/// The source's two stages travel in the reply (<see cref="FaultTiming"/>), so the network's
/// share is the round trip less the source's time, with no clock common to both hosts. A fault
/// on a page already on its way gets no reply of its own when the page arrives first by the push
/// or an earlier window: its time from blocking to installation is <c>inFlight</c>. The hart
/// writes its request itself, so it cannot run before that write returns: <c>send</c> is the
/// write's own time (inside <c>network</c> when a reply comes), and <c>resume</c> starts at the
/// later of the installation and the write's return.
/// Not thread-safe: the remote pager records under its lock.
/// </summary>
public sealed class FaultStageRecorder
{
    private readonly List<double> _total = new(1 << 12);
    private readonly List<double> _request = new(1 << 12);
    private readonly List<double> _send = new(1 << 12);
    private readonly List<double> _sourceQueue = new(1 << 12);
    private readonly List<double> _sourceLink = new(1 << 12);
    private readonly List<double> _network = new(1 << 12);
    private readonly List<double> _install = new(1 << 12);
    private readonly List<double> _resume = new(1 << 12);
    private readonly List<double> _inFlight = new(1 << 12);
    private readonly List<SlowFault> _slowest = new(SlowestKept + 1);
    private long _firstBlocked;

    /// <summary>How many of the slowest faults the summary names, each with its own stages.</summary>
    public const int SlowestKept = 5;

    /// <summary>Records one stall from its timestamps (Stopwatch ticks; 0 = that moment did not happen).</summary>
    /// <param name="requestWritten">When the hart's write of its request returned (0: it wrote none, or its time was not taken).</param>
    public void Record(long blocked, long requestSent, long requestWritten, long replyReceived, FaultTiming timing, long installed, long resumed)
    {
        lock (_total)
        {
            _firstBlocked = _firstBlocked == 0 ? blocked : Math.Min(_firstBlocked, blocked);
            SlowFault f = Stages(blocked, requestSent, requestWritten, replyReceived, timing, installed, resumed);
            _total.Add(f.TotalMs);
            Add(_request, f.RequestMs);
            Add(_send, f.SendMs);
            Add(_network, f.NetworkMs);
            Add(_sourceQueue, f.SourceQueueMs);
            Add(_sourceLink, f.SourceLinkMs);
            Add(_install, f.InstallMs);
            Add(_resume, f.ResumeMs);
            Add(_inFlight, f.InFlightMs);
            KeepIfSlow(f);
        }

        static void Add(List<double> stage, double? ms)
        {
            if (ms is double v)
            {
                stage.Add(v);
            }
        }
    }

    /// <summary>One fault's stages from its timestamps; a stage that did not happen for it is null.</summary>
    private SlowFault Stages(long blocked, long requestSent, long requestWritten, long replyReceived, FaultTiming timing, long installed, long resumed)
    {
        bool sent = requestSent != 0;
        bool replied = replyReceived != 0 && sent;
        double queue = timing.QueueNs / 1e6, link = timing.LinkNs / 1e6;
        long runnable = Math.Max(installed, requestWritten);
        return new SlowFault(
            Ms(blocked - _firstBlocked),
            Ms(resumed - blocked),
            sent ? Ms(requestSent - blocked) : null,
            sent && requestWritten >= requestSent ? Ms(requestWritten - requestSent) : null,
            replied ? Math.Max(0, Ms(replyReceived - requestSent) - queue - link) : null,
            replied ? queue : null,
            replied ? link : null,
            replied && installed >= replyReceived ? Ms(installed - replyReceived) : null,
            installed != 0 && resumed >= runnable ? Ms(resumed - runnable) : null,
            !replied && installed != 0 ? Ms(installed - blocked) : null);
    }

    /// <summary>Keeps <paramref name="fault"/> among the <see cref="SlowestKept"/> slowest so far, slowest first.</summary>
    private void KeepIfSlow(SlowFault fault)
    {
        int at = _slowest.Count;
        while (at > 0 && _slowest[at - 1].TotalMs < fault.TotalMs)
        {
            at--;
        }

        if (at < SlowestKept)
        {
            _slowest.Insert(at, fault);
            if (_slowest.Count > SlowestKept)
            {
                _slowest.RemoveAt(SlowestKept);
            }
        }
    }

    /// <summary>Every stall's total, in milliseconds, in the order they ended.</summary>
    public double[] Totals()
    {
        lock (_total)
        {
            return [.. _total];
        }
    }

    public FaultStagesReport Summary()
    {
        lock (_total)
        {
            return new FaultStagesReport(
                StageSummary.Of(_request), StageSummary.Of(_network), StageSummary.Of(_sourceQueue), StageSummary.Of(_sourceLink),
                StageSummary.Of(_install), StageSummary.Of(_resume), StageSummary.Of(_inFlight), StageSummary.Of(_total))
            {
                Send = StageSummary.Of(_send),
                Slowest = [.. _slowest],
            };
        }
    }

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

/// <summary>
/// A fault's stages (see <see cref="FaultStageRecorder"/>): <c>request</c> hart blocked → request
/// handed to the kernel; <c>network</c> the round trip less the source's time (the send, both
/// directions, the kernels and the receivers' wake-ups); <c>sourceQueue</c> request arrived → reply ready (claim, copy,
/// encode); <c>sourceLink</c> reply ready → on the connection (waiting for the link, the reply's
/// own transmission time, the send lock); <c>install</c> reply received → page installed;
/// <c>resume</c> page installed (and the request's write returned) → hart running; <c>inFlight</c> blocked → installed for faults on
/// pages that arrived by another path; <c>total</c> the whole stall; <c>send</c> the hart's write
/// of its request (request handed to the kernel → the write returned).
/// </summary>
public sealed record FaultStagesReport(
    StageSummary Request, StageSummary Network, StageSummary SourceQueue, StageSummary SourceLink,
    StageSummary Install, StageSummary Resume, StageSummary InFlight, StageSummary Total)
{
    /// <summary>The hart's write of its request (null in a report from before it was measured).</summary>
    public StageSummary? Send { get; init; }

    /// <summary>The slowest faults (at most <see cref="FaultStageRecorder.SlowestKept"/>), slowest first, each with its own stages.</summary>
    public IReadOnlyList<SlowFault>? Slowest { get; init; }
}

/// <summary>
/// One fault's stages, in milliseconds (null: that stage did not happen for it, e.g. no reply
/// for a page that came by another path); <paramref name="AtMs"/> is when the hart blocked,
/// after the first fault's blocking (about the resume).
/// </summary>
public readonly record struct SlowFault(
    double AtMs, double TotalMs, double? RequestMs, double? SendMs, double? NetworkMs,
    double? SourceQueueMs, double? SourceLinkMs, double? InstallMs, double? ResumeMs, double? InFlightMs);

/// <summary>A stage's distribution in milliseconds.</summary>
public sealed record StageSummary(long Count, double P50Ms, double P99Ms, double MaxMs, double MeanMs)
{
    public static StageSummary Of(List<double> samples)
    {
        if (samples.Count == 0)
        {
            return new StageSummary(0, 0, 0, 0, 0);
        }

        double[] sorted = [.. samples];
        Array.Sort(sorted);
        return new StageSummary(sorted.Length, Percentile(sorted, 0.5), Percentile(sorted, 0.99), sorted[^1], sorted.Average());
    }

    public static double Percentile(double[] sorted, double q)
        => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, Math.Max(0, (int)Math.Ceiling(q * sorted.Length) - 1))];
}
