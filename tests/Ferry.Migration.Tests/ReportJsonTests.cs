using System.Text.Json;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Tests.Shared;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// report.json and the host API keep the names they had as strings: a renamed or added enum
/// member fails here until its JSON name is written down (docs/report.md lists them).
/// </summary>
public class ReportJsonTests
{
    private static readonly Dictionary<MigrationOutcome, string> Outcomes = new()
    {
        [MigrationOutcome.Completed] = "completed",
        [MigrationOutcome.Failed] = "failed",
        [MigrationOutcome.Cancelled] = "cancelled",
    };

    private static readonly Dictionary<VmLocation, string> Locations = new()
    {
        [VmLocation.Source] = "source",
        [VmLocation.SourcePaused] = "source-paused",
        [VmLocation.Destination] = "destination",
    };

    private static readonly Dictionary<StrategyKind, string> Strategies = new()
    {
        [StrategyKind.PreCopy] = "precopy",
        [StrategyKind.PostCopy] = "postcopy",
        [StrategyKind.Hybrid] = "hybrid",
        [StrategyKind.Auto] = "auto",
    };

    [Fact]
    public void The_timeline_takes_the_bytes_between_two_source_samples_linearly()
    {
        // Source samples 25 ms apart; the destination's points fall between them.
        List<TimelinePoint> source = [new(10, 1_000, 0, 0), new(35, 1_000, 0, 0), new(60, 3_500_000, 0, 0), new(85, 6_000_000, 0, 0)];
        Assert.Equal(1_000, TimelineReport.BytesAt(source, 5));          // before the first: the first's
        Assert.Equal(1_000, TimelineReport.BytesAt(source, 20));         // nothing sent between 10 and 35
        Assert.Equal(1_750_500, TimelineReport.BytesAt(source, 47.5));   // half way from 35 to 60
        Assert.Equal(3_500_000, TimelineReport.BytesAt(source, 60));
        Assert.Equal(5_000_000, TimelineReport.BytesAt(source, 75));
        Assert.Equal(6_000_000, TimelineReport.BytesAt(source, 200));    // after the last: the last's
        Assert.Equal(0, TimelineReport.BytesAt([], 1));
    }

    [Fact]
    public void The_slowest_faults_cross_from_the_destination_in_its_metrics()
    {
        var recorder = new FaultStageRecorder();
        long ms = System.Diagnostics.Stopwatch.Frequency / 1000;
        recorder.Record(ms, 0, 0, 0, default, 0, 3 * ms);                                           // no request, no install
        recorder.Record(10 * ms, 11 * ms, 12 * ms, 0, default, 14 * ms, 15 * ms);                     // in flight
        var sent = new DestinationMetrics { FaultStages = recorder.Summary() };

        DestinationMetrics back = JsonSerializer.Deserialize<DestinationMetrics>(JsonSerializer.SerializeToUtf8Bytes(sent, MigrationReport.Json), MigrationReport.Json)!;

        Assert.Equal(sent.FaultStages!.Slowest, back.FaultStages!.Slowest);
        Assert.Equal(2, back.FaultStages.Slowest!.Count);
        Assert.Equal(5, back.FaultStages.Slowest[0].TotalMs, 6);          // slowest first
        Assert.Equal(9, back.FaultStages.Slowest[0].AtMs, 6);             // after the first fault's blocking
        Assert.Equal(4, back.FaultStages.Slowest[0].InFlightMs!.Value, 6);
        Assert.Null(back.FaultStages.Slowest[1].RequestMs);               // what did not happen stays null
    }

    [Fact]
    public void Outcomes_keep_their_names() => AssertNames(Outcomes);

    [Fact]
    public void Locations_keep_their_names() => AssertNames(Locations);

    [Fact]
    public void Strategies_keep_their_names() => AssertNames(Strategies);

    [Fact]
    public void A_report_writes_and_reads_the_names()
    {
        MigrationReport report = Report(MigrationOutcome.Failed, VmLocation.SourcePaused, StrategyKind.Auto) with
        {
            Decisions = [new StrategyDecision(12, StrategyKind.PreCopy, "converges", 10, 1000, null), new StrategyDecision(40, StrategyKind.Hybrid, "stopped shrinking", 900, 1000, 3)],
        };

        string json = JsonSerializer.Serialize(report, MigrationReport.Json);
        Assert.Contains("\"strategy\": \"auto\"", json, StringComparison.Ordinal);
        Assert.Contains("\"outcome\": \"failed\"", json, StringComparison.Ordinal);
        Assert.Contains("\"vmLocation\": \"source-paused\"", json, StringComparison.Ordinal);
        Assert.Contains("\"choice\": \"precopy\"", json, StringComparison.Ordinal);
        Assert.Contains("\"choice\": \"hybrid\"", json, StringComparison.Ordinal);

        MigrationReport back = JsonSerializer.Deserialize<MigrationReport>(json, MigrationReport.Json)!;
        Assert.Equal(MigrationOutcome.Failed, back.Outcome);
        Assert.Equal(VmLocation.SourcePaused, back.VmLocation);
        Assert.Equal(StrategyKind.Auto, back.Strategy);
        Assert.Equal([StrategyKind.PreCopy, StrategyKind.Hybrid], back.Decisions.Select(d => d.Choice));
    }

    [Theory]
    [InlineData("\"outcome\": \"completed\"", "\"outcome\": 0")]
    [InlineData("\"outcome\": \"completed\"", "\"outcome\": \"Completed-ish\"")]
    [InlineData("\"vmLocation\": \"destination\"", "\"vmLocation\": \"elsewhere\"")]
    [InlineData("\"strategy\": \"hybrid\"", "\"strategy\": \"warp\"")]
    [InlineData("\"strategy\": \"hybrid\"", "\"strategy\": 3")]
    public void A_report_with_an_unknown_name_or_a_number_is_refused(string good, string bad)
    {
        string json = JsonSerializer.Serialize(Report(MigrationOutcome.Completed, VmLocation.Destination, StrategyKind.Hybrid), MigrationReport.Json);
        Assert.Contains(good, json, StringComparison.Ordinal);
        Assert.NotNull(JsonSerializer.Deserialize<MigrationReport>(json, MigrationReport.Json));
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<MigrationReport>(json.Replace(good, bad, StringComparison.Ordinal), MigrationReport.Json));
    }

    /// <summary>Every member has its name written down here, serialises to it, and reads back from it.</summary>
    internal static void AssertNames<T>(Dictionary<T, string> names)
        where T : struct, Enum
    {
        Assert.Equal(Enum.GetValues<T>().Order(), names.Keys.Order());
        foreach ((T value, string name) in names)
        {
            Assert.Equal($"\"{name}\"", JsonSerializer.Serialize(value, MigrationReport.Json));
            Assert.Equal(value, JsonSerializer.Deserialize<T>($"\"{name}\"", MigrationReport.Json));
        }
    }

    private static MigrationReport Report(MigrationOutcome outcome, VmLocation location, StrategyKind strategy) => SampleReports.Minimal(outcome, location, strategy);
}
