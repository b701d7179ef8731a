using System.Text.Json;
using Ferry.Cli.Bench;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Xunit;

namespace Ferry.Cli.Tests;

/// <summary>
/// The enums the host API and the bench write keep the names they had as strings: a renamed or
/// added member fails here until its name is written down.
/// </summary>
public class JsonNamesTests
{
    [Fact]
    public void Bench_outcomes_keep_their_names()
    {
        AssertNames(BenchResults.Json, new Dictionary<BenchOutcome, string>
        {
            [BenchOutcome.Completed] = "completed",
            [BenchOutcome.Failed] = "failed",
            [BenchOutcome.Cancelled] = "cancelled",
            [BenchOutcome.ForcedStopAndCopy] = "forced-stop-and-copy",
            [BenchOutcome.DidNotConverge] = "did-not-converge",
        });

        // In a run, as results.json has it.
        var run = new BenchRun { Strategy = "precopy", Workload = "idle", Repeat = 1, Outcome = BenchOutcome.ForcedStopAndCopy };
        string json = JsonSerializer.Serialize(run, BenchResults.Json);
        Assert.Contains("\"outcome\": \"forced-stop-and-copy\"", json, StringComparison.Ordinal);
        Assert.Equal(BenchOutcome.ForcedStopAndCopy, JsonSerializer.Deserialize<BenchRun>(json, BenchResults.Json)!.Outcome);
    }

    [Fact]
    public void Vm_states_keep_their_names()
    {
        var names = new Dictionary<VmState, string>
        {
            [VmState.Incoming] = "incoming",
            [VmState.Arriving] = "arriving",
            [VmState.Running] = "running",
            [VmState.Paused] = "paused",
            [VmState.Exited] = "exited",
            [VmState.Stopped] = "stopped",
            [VmState.Departing] = "departing",
            [VmState.Migrating] = "migrating",
            [VmState.Migrated] = "migrated",
            [VmState.Failed] = "failed",
        };
        AssertNames(ApiJson.Options, names);
        Assert.All(names, n => Assert.Equal(n.Value, VmInstance.Describe(n.Key)));
    }

    /// <summary>Every member has its name written down, serialises to it, reads back from it, and prints as it; a number is refused.</summary>
    private static void AssertNames<T>(JsonSerializerOptions options, Dictionary<T, string> names)
        where T : struct, Enum
    {
        Assert.Equal(Enum.GetValues<T>().Order(), names.Keys.Order());
        foreach ((T value, string name) in names)
        {
            Assert.Equal($"\"{name}\"", JsonSerializer.Serialize(value, options));
            Assert.Equal(value, JsonSerializer.Deserialize<T>($"\"{name}\"", options));
            Assert.Equal(name, EnumNames.Kebab(value));
        }

        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<T>("1", options));
    }
}
