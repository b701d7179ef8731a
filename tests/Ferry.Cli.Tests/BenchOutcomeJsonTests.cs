using System.Text.Json;
using Ferry.Cli.Bench;
using Xunit;

namespace Ferry.Cli.Tests;

/// <summary>results.json and results.csv keep the outcome names they had as strings.</summary>
public class BenchOutcomeJsonTests
{
    private static readonly Dictionary<BenchOutcome, string> Names = new()
    {
        [BenchOutcome.Completed] = "completed",
        [BenchOutcome.Failed] = "failed",
        [BenchOutcome.Cancelled] = "cancelled",
        [BenchOutcome.ForcedStopAndCopy] = "forced-stop-and-copy",
        [BenchOutcome.DidNotConverge] = "did-not-converge",
    };

    [Fact]
    public void Bench_outcomes_keep_their_names()
    {
        Assert.Equal(Enum.GetValues<BenchOutcome>().Order(), Names.Keys.Order());
        foreach ((BenchOutcome value, string name) in Names)
        {
            var run = new BenchRun { Strategy = "precopy", Workload = "idle", Repeat = 1, Outcome = value };
            string json = JsonSerializer.Serialize(run, BenchResults.Json);
            Assert.Contains($"\"outcome\": \"{name}\"", json, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize<BenchRun>(json, BenchResults.Json)!.Outcome);
            Assert.Equal(name, Ferry.Migration.Metrics.EnumNames.Kebab(value));
        }
    }
}
