using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;
using Ferry.Migration.Metrics;

namespace Ferry.Cli.Client;

/// <summary>p50 and p99 of request latency (milliseconds) over a set of requests; null when none was answered.</summary>
public sealed record LatencyPercentiles(double P50, double P99, int Requests)
{
    /// <summary>Nearest-rank percentiles of the answered requests' latencies.</summary>
    public static LatencyPercentiles? Of(IEnumerable<KvSample> samples)
    {
        double[] sorted = [.. samples.Where(s => s.Answered).Select(s => s.LatencyMs)];
        if (sorted.Length == 0)
        {
            return null;
        }

        Array.Sort(sorted);
        return new LatencyPercentiles(StageSummary.Percentile(sorted, 0.50), StageSummary.Percentile(sorted, 0.99), sorted.Length);
    }
}

/// <summary>Latency before, during and after a migration (requests by the time they were sent).</summary>
public sealed record PhaseLatencies(LatencyPercentiles? Before, LatencyPercentiles? During, LatencyPercentiles? After);

/// <summary>The longest time without a reply: from <see cref="FromMs"/> (a reply, or the start) to the next reply (or the end).</summary>
public sealed record ReplyGap(double Ms, double FromMs);

/// <summary>Every request of one <see cref="KvClient"/> run, and the figures drawn from them.</summary>
public sealed class KvClientResult(KvClientOptions options, DateTimeOffset startedAt, KvSample[] samples, int brokenConnections)
{
    public KvClientOptions Options { get; } = options;

    /// <summary>Wall-clock time of the schedule's zero (samples' times count from here).</summary>
    public DateTimeOffset StartedAt { get; } = startedAt;

    /// <summary>Every request sent, in schedule order.</summary>
    public IReadOnlyList<KvSample> Samples { get; } = samples;

    /// <summary>Connections that broke (the server closed or reset them); none in a good run.</summary>
    public int BrokenConnections { get; } = brokenConnections;

    public int Failed => Samples.Count(s => s.Failed);

    /// <summary>The first failure's reason, for the summary line.</summary>
    public string? FirstError => Samples.FirstOrDefault(s => s.Failed).Error;

    public LatencyPercentiles? Latency => LatencyPercentiles.Of(Samples);

    /// <summary>The longest a sender fell behind its schedule (ms).</summary>
    public double MaxLatenessMs => Samples.Count == 0 ? 0 : Samples.Max(s => s.LatenessMs);

    /// <summary>
    /// The client-observed outage: the longest interval without a reply, over the replies'
    /// arrival times, from the first request's send (a server that never answers has one gap, the
    /// whole run) to the last reply, or to the end of the run (the last send plus the drain
    /// timeout) when requests went unanswered. A healthy server's figure is about one request
    /// interval (1 / rate) plus jitter.
    /// </summary>
    public ReplyGap LongestGap => LongestGapWithin(double.NegativeInfinity, double.PositiveInfinity);

    /// <summary>
    /// <see cref="LongestGap"/> among the intervals that overlap [<paramref name="fromMs"/>,
    /// <paramref name="toMs"/>] (e.g. a migration: its outage, not a hiccup of the host long before it).
    /// </summary>
    public ReplyGap LongestGapWithin(double fromMs, double toMs)
    {
        if (Samples.Count == 0)
        {
            return new ReplyGap(0, 0);
        }

        double[] replies = [.. Samples.Where(s => s.Answered).Select(s => s.RepliedMs)];
        Array.Sort(replies);
        double previous = Samples[0].SentMs;
        var best = new ReplyGap(0, previous);
        void Consider(double next)
        {
            if (next - previous > best.Ms && next >= fromMs && previous <= toMs)
            {
                best = new ReplyGap(next - previous, previous);
            }
        }

        foreach (double r in replies)
        {
            Consider(r);
            previous = r;
        }

        if (Samples.Any(s => !s.Answered))
        {
            Consider(Samples.Max(s => s.SentMs) + Options.DrainTimeout.TotalMilliseconds);
        }

        return best;
    }

    /// <summary>Percentiles of the requests sent before <paramref name="fromMs"/>, between it and <paramref name="toMs"/>, and after (ms from the start).</summary>
    public PhaseLatencies Phases(double fromMs, double toMs) => new(
        LatencyPercentiles.Of(Samples.Where(s => s.SentMs < fromMs)),
        LatencyPercentiles.Of(Samples.Where(s => s.SentMs >= fromMs && s.SentMs < toMs)),
        LatencyPercentiles.Of(Samples.Where(s => s.SentMs >= toMs)));

    /// <summary>Milliseconds from the start to a wall-clock instant (e.g. a QMP event's or a migration report's).</summary>
    public double MsSinceStart(DateTimeOffset at) => (at - StartedAt).TotalMilliseconds;

    /// <summary>Every request as CSV: due, sent, latency (empty when unanswered) in ms, connection, kind, error.</summary>
    public string SamplesCsv()
    {
        var sb = new StringBuilder("dueMs,sentMs,latencyMs,connection,kind,error\n");
        foreach (KvSample s in Samples)
        {
            sb.Append(F(s.DueMs)).Append(',').Append(F(s.SentMs)).Append(',').Append(s.Answered ? F(s.LatencyMs) : "").Append(',')
                .Append(s.Connection.ToString(CultureInfo.InvariantCulture)).Append(',').Append(s.Kind == KvRequestKind.Put ? "put" : "get").Append(',');
            if (s.Error is not null)
            {
                sb.Append('"').Append(s.Error.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"');
            }

            sb.Append('\n');
        }

        return sb.ToString();
    }

    /// <summary>The summary (and, when asked, every request) as a JSON document.</summary>
    public KvClientSummary Summary(bool withSamples) => new()
    {
        Target = Options.Target.ToString() ?? "",
        Rate = Options.Rate,
        Connections = Options.Connections,
        StartedAt = StartedAt,
        Requests = Samples.Count,
        Failed = Failed,
        FirstError = FirstError,
        BrokenConnections = BrokenConnections,
        Latency = Latency,
        LongestGapMs = LongestGap.Ms,
        LongestGapAtMs = LongestGap.FromMs,
        MaxLatenessMs = MaxLatenessMs,
        Samples = withSamples ? [.. Samples.Select(s => new KvSampleJson(s.DueMs, s.SentMs, s.Answered ? s.LatencyMs : null, s.Connection, s.Kind == KvRequestKind.Put ? "put" : "get", s.Error))] : null,
    };

    private static string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}

/// <summary>`ferry client --json` and the JSON form of --samples.</summary>
public sealed record KvClientSummary
{
    public required string Target { get; init; }
    public double Rate { get; init; }
    public int Connections { get; init; }
    public DateTimeOffset StartedAt { get; init; }
    public int Requests { get; init; }
    public int Failed { get; init; }
    public string? FirstError { get; init; }
    public int BrokenConnections { get; init; }
    public LatencyPercentiles? Latency { get; init; }
    public double LongestGapMs { get; init; }
    public double LongestGapAtMs { get; init; }
    public double MaxLatenessMs { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<KvSampleJson>? Samples { get; init; }
}

public sealed record KvSampleJson(double DueMs, double SentMs, double? LatencyMs, int Connection, string Kind, string? Error);
