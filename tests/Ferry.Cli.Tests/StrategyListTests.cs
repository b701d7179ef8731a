using System.CommandLine;
using System.CommandLine.Completions;
using Ferry.Cli.Bench;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Xunit;

namespace Ferry.Cli.Tests;

/// <summary>
/// The CLI lists and parses strategies from the policies: a strategy added as one class and one
/// <see cref="StrategyKind"/> value is in `ferry migrate --strategy`'s help and completions,
/// `ferry demo`'s, and the bench's list without another edit.
/// </summary>
public class StrategyListTests
{
    public static TheoryData<StrategyKind> Every() => [.. Enum.GetValues<StrategyKind>()];

    private static Option<StrategyKind> StrategyOf(Command command) => command.Options.OfType<Option<StrategyKind>>().Single(o => o.Name == "--strategy");

    [Theory]
    [MemberData(nameof(Every))]
    public void Every_strategy_is_offered_and_parsed_by_migrate_and_demo(StrategyKind kind)
    {
        string name = StrategyPolicy.NameOf(kind);
        foreach ((Command command, string args) in new[] { (MigrateCommand.Create(), "vm "), (DemoCommand.Create(), "") })
        {
            Option<StrategyKind> option = StrategyOf(command);
            Assert.Contains(name + ": " + StrategyPolicy.For(kind).Description, option.Description, StringComparison.Ordinal);
            Assert.Contains(name, option.GetCompletions(CompletionContext.Empty).Select(c => c.Label));
            ParseResult result = command.Parse($"{args}--strategy {name}");
            Assert.Empty(result.Errors);
            Assert.Equal(kind, result.GetValue(option));
        }
    }

    [Theory]
    [MemberData(nameof(Every))]
    public void Every_strategy_is_in_the_bench(StrategyKind kind) => Assert.Contains(StrategyPolicy.NameOf(kind), BenchCommand.FerryStrategies);

    [Fact]
    public void An_unknown_strategy_is_a_parse_error_naming_the_known_ones()
    {
        Command migrate = MigrateCommand.Create();
        ParseResult result = migrate.Parse("vm --strategy warp");
        string error = Assert.Single(result.Errors).Message;
        Assert.Contains("warp", error, StringComparison.Ordinal);
        foreach (string name in StrategyPolicy.Names)
        {
            Assert.Contains(name, error, StringComparison.Ordinal);
        }

        Assert.Equal(StrategyKind.PreCopy, migrate.Parse("vm --strategy pre-copy").GetValue(StrategyOf(migrate)));
        Assert.Equal(StrategyKind.Auto, migrate.Parse("vm").GetValue(StrategyOf(migrate)));
        Command demo = DemoCommand.Create();
        Assert.Equal(StrategyKind.Hybrid, demo.Parse("").GetValue(StrategyOf(demo)));
    }
}
