using System.Text.RegularExpressions;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>`ferry demo` as the README runs it: a Linux VM boots on A, moves to B while serving, and its console goes on at B.</summary>
[Collection("bench")]
public sealed partial class DemoTests
{
    [Fact]
    public async Task Demo_moves_a_serving_Linux_vm_and_its_console_continues_at_B()
    {
        (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(TimeSpan.FromMinutes(3), "demo");
        Assert.True(exit == 0, stderr + stdout);
        Assert.Contains("booting Linux 6.1 on OpenSBI on A", stdout);
        Assert.Contains("A> ferry-init: ready", stdout);
        Assert.Matches(OutcomeCompleted(), stdout);
        Assert.Matches(AtDestination(), stdout);

        // kvstore's progress goes on at B, past the last count A printed.
        long lastAtA = OpsLines(stdout, "A").Max();
        long[] atB = OpsLines(stdout, "B");
        Assert.NotEmpty(atB);
        Assert.True(atB.Min() > lastAtA, $"B's first count {atB.Min()} is not after A's last {lastAtA}");
    }

    private static long[] OpsLines(string stdout, string host)
        => [.. Regex.Matches(stdout, $@"{host}> ops (\d+) hits").Select(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))];

    [GeneratedRegex(@"outcome\s+completed")]
    private static partial Regex OutcomeCompleted();

    [GeneratedRegex(@"vm is at\s+destination")]
    private static partial Regex AtDestination();
}
