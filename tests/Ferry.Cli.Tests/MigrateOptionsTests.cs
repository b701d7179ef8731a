using System.CommandLine;
using Ferry.Host;
using Xunit;

namespace Ferry.Cli.Tests;

/// <summary>The tuning options every migration entry point shares, parsed into the API request.</summary>
public sealed class MigrateOptionsTests
{
    private static MigrateRequest Parse(string commandLine)
    {
        (Option[] options, Func<ParseResult, MigrateRequest> parse) = MigrateCommand.TuningOptions();
        var command = new RootCommand();
        foreach (Option option in options)
        {
            command.Options.Add(option);
        }

        ParseResult result = command.Parse(commandLine);
        Assert.Empty(result.Errors);
        return parse(result);
    }

    [Fact]
    public void Every_tuning_option_reaches_the_request()
    {
        MigrateRequest r = Parse("--bandwidth 1Gbit --downtime-limit 20ms --max-rounds 5 --max-live-time 10s --locality 4 --locality-adaptive "
            + "--ws-windows 4 --ws-min-hits 2 --ws-max 8M --ws-max-pause 20ms --ws-presend --live-passes 1 --push-order linear --compress");
        Assert.Equal("1Gbit", r.Bandwidth);
        Assert.Equal(20, r.DowntimeLimitMs);
        Assert.Equal(5, r.MaxRounds);
        Assert.Equal(10_000, r.MaxLiveTimeMs);
        Assert.Equal(4, r.LocalityPages);
        Assert.True(r.LocalityAdaptive);
        Assert.Equal(4, r.WorkingSetWindows);
        Assert.Equal(2, r.WorkingSetMinHits);
        Assert.Equal(8L << 20, r.WorkingSetMaxBytes);
        Assert.Equal(20, r.WorkingSetMaxPauseMs);
        Assert.True(r.WorkingSetPresend);
        Assert.Equal(1, r.LivePasses);
        Assert.Equal("linear", r.PushOrder);
        Assert.True(r.Compress);
    }

    [Fact]
    public void Channels_reach_the_migration_and_a_count_outside_1_to_8_is_refused()
    {
        MigrateRequest r = Parse("--channels 4");
        Assert.Equal(4, r.Channels);
        Assert.Equal(4, OutgoingMigrations.ToOptions(r with { Strategy = "hybrid" }).Channels);
        Assert.Equal(1, OutgoingMigrations.ToOptions(Parse("") with { Strategy = "hybrid" }).Channels);
        foreach (string bad in new[] { "0", "9" })
        {
            ApiException e = Assert.Throws<ApiException>(() => OutgoingMigrations.ToOptions(Parse("--channels " + bad) with { Strategy = "hybrid" }));
            Assert.Equal(400, e.Status);
            Assert.Contains($"channels must be 1..8, not {bad}", e.Message);
        }
    }

    [Fact]
    public void The_adaptive_window_can_be_turned_off()
    {
        Assert.False(Parse("--locality-adaptive false").LocalityAdaptive);
        Assert.True(Parse("--locality-adaptive true").LocalityAdaptive);
    }

    [Fact]
    public void Options_left_out_take_the_host_defaults()
    {
        MigrateRequest r = Parse("");
        Assert.Equal("unlimited", r.Bandwidth);
        Assert.Equal(20, r.DowntimeLimitMs);
        Assert.Null(r.LocalityPages);
        Assert.Null(r.LocalityAdaptive);
        Assert.Null(r.LivePasses);
        Assert.Null(r.WorkingSetMaxPauseMs);
        Assert.Null(r.WorkingSetPresend);
        Assert.Null(r.PushOrder);
        Assert.Null(r.Compress);
    }
}
