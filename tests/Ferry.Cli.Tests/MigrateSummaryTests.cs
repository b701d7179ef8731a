using Ferry.Cli;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Spectre.Console;
using Ferry.Tests.Shared;
using Xunit;

namespace Ferry.Cli.Tests;

/// <summary>The console is the process's: these run alone.</summary>
[CollectionDefinition(nameof(MigrateSummaryTests), DisableParallelization = true)]
public sealed class MigrateSummaryCollection;

/// <summary>What `ferry migrate` (and `ferry demo`) print after a move.</summary>
[Collection(nameof(MigrateSummaryTests))]
public class MigrateSummaryTests
{
    [Fact]
    public void The_summary_names_where_the_pause_went()
    {
        MigrationReport report = Report() with
        {
            DowntimeMs = 25.57,
            Switchover = new SwitchoverReport(3.04, 17.41, 2_000_000, 0.21, 9673, 3.1, 4.3, 5.52),
        };

        string text = Render(report);
        Assert.Contains("downtime", text, StringComparison.Ordinal);
        Assert.Contains("\npause ms: select 3.0, pages 17.4 (1.9 MiB), state 0.2, destination 4.3, Resumed back at the source 5.5 (handshake round trip 3.1)", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_move_without_a_switchover_prints_no_pause_parts()
    {
        string text = Render(Report());
        Assert.Contains("downtime", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\npause ms:", "\n" + text, StringComparison.Ordinal);
    }

    private static string Render(MigrationReport report)
    {
        IAnsiConsole before = AnsiConsole.Console;
        var writer = new StringWriter();
        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
        try
        {
            AnsiConsole.Console.Profile.Width = 400;
            MigrateCommand.PrintSummary(report);
        }
        finally
        {
            AnsiConsole.Console = before;
        }

        return string.Join('\n', writer.ToString().Split('\n').Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))));
    }

    private static MigrationReport Report() => SampleReports.Minimal(MigrationOutcome.Completed, VmLocation.Destination, StrategyKind.Hybrid);
}
