using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// A strategy is one class and one <see cref="StrategyKind"/> value: every value has exactly one
/// policy, a name of its own that parses back, and passes the protocol's and the page file's
/// strategy check; an enum value added without a policy fails here (the CLI's lists:
/// Ferry.Cli.Tests' StrategyListTests; the lossless migration of each: MigrationCorrectnessTests,
/// whose cases cover every value).
/// </summary>
public class StrategyRegistryTests
{
    public static TheoryData<StrategyKind> Every() => [.. Enum.GetValues<StrategyKind>()];

    [Theory]
    [MemberData(nameof(Every))]
    public void Every_strategy_has_one_policy_whose_name_parses_back(StrategyKind kind)
    {
        StrategyPolicy policy = StrategyPolicy.For(kind);
        Assert.Equal(kind, policy.Kind);
        Assert.NotSame(policy, StrategyPolicy.For(kind)); // a new policy per migration (auto keeps its decision in it)
        Assert.Single(StrategyPolicy.All, k => k == kind);
        Assert.Equal(kind, StrategyPolicy.Parse(policy.Name));
        Assert.Equal(kind, StrategyPolicy.Parse(" " + policy.Name.ToUpperInvariant() + " "));
        Assert.False(string.IsNullOrWhiteSpace(policy.Description));
        Assert.True(StrategyPolicy.IsKnown((byte)kind));
    }

    [Fact]
    public void Names_are_unique_and_the_list_is_every_value()
    {
        Assert.Equal(Enum.GetValues<StrategyKind>().Order(), StrategyPolicy.All.Order());
        Assert.Equal(StrategyPolicy.All.Count, StrategyPolicy.Names.Distinct().Count());
        Assert.Equal(MigrationOptions.DefaultStrategy, StrategyPolicy.All[0]);
    }

    [Fact]
    public void A_value_without_a_policy_is_refused_everywhere()
    {
        var unknown = (StrategyKind)(Enum.GetValues<StrategyKind>().Max(k => (byte)k) + 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => StrategyPolicy.For(unknown));
        Assert.False(StrategyPolicy.IsKnown((byte)unknown));
        Assert.False(StrategyPolicy.IsKnown(0));
        ArgumentException e = Assert.Throws<ArgumentException>(() => StrategyPolicy.Parse("warp"));
        foreach (string name in StrategyPolicy.Names)
        {
            Assert.Contains(name, e.Message, StringComparison.Ordinal);
        }

        // The handshake refuses a Hello naming it, as a page file naming it is refused.
        byte[] hello = new Hello
        {
            Role = ConnectionRole.Main,
            Token = new byte[Hello.TokenLength],
            VmName = "vm",
            Machine = new Ferry.Machine.Board.MachineConfig { MemorySize = 16UL << 20 },
            Strategy = StrategyKind.Hybrid,
            StopAt = ulong.MaxValue,
            LocalityPages = 16,
            LocalityAdaptive = true,
            PeerTimeoutMs = Hello.DefaultPeerTimeoutMs,
        }.Encode();
        Assert.Equal(StrategyKind.Hybrid, Hello.Decode(hello).Strategy);
        int at = Array.IndexOf(hello, (byte)StrategyKind.Hybrid, StrategyOffset(hello));
        hello[at] = (byte)unknown;
        Assert.Throws<ProtocolException>(() => Hello.Decode(hello));
    }

    /// <summary>Where the strategy byte is in an encoded Hello: found by encoding one that differs only in it.</summary>
    private static int StrategyOffset(byte[] hello)
    {
        Hello h = Hello.Decode(hello);
        byte[] other = (h with { Strategy = h.Strategy == StrategyKind.PreCopy ? StrategyKind.PostCopy : StrategyKind.PreCopy }).Encode();
        return Enumerable.Range(0, hello.Length).Single(i => hello[i] != other[i]);
    }

    [Fact]
    public void Only_the_policy_answers_strategy_questions()
    {
        // The knobs that used to be MigrationOptions.Effective* and `if Hybrid` tests.
        var options = new MigrationOptions { WorkingSetMaxPause = TimeSpan.FromMilliseconds(5), DowntimeLimit = TimeSpan.FromMilliseconds(30) };
        foreach (StrategyKind kind in StrategyPolicy.All)
        {
            StrategyPolicy p = StrategyPolicy.For(kind);
            Assert.Equal(TimeSpan.FromMilliseconds(5), p.PauseBudget(options));
            Assert.Equal(TimeSpan.FromMilliseconds(30), p.PauseBudget(options with { WorkingSetMaxPause = null }));
            Assert.Equal(PushOrder.FaultNeighbourhood, p.PushOrderFor(options with { PushOrder = PushOrder.FaultNeighbourhood }));
        }

        StrategyPolicy hybrid = StrategyPolicy.For(StrategyKind.Hybrid), pre = StrategyPolicy.For(StrategyKind.PreCopy);
        Assert.Equal(PushOrder.FaultNeighbourhoodThenRecency, hybrid.PushOrderFor(options));
        Assert.Equal(PushOrder.Linear, pre.PushOrderFor(options));
        Assert.Equal(MigrationOptions.DefaultAdaptiveLocalityPages, hybrid.Locality(options));
        Assert.Equal(1, pre.Locality(options));

        Assert.False(StrategyPolicy.For(StrategyKind.PreCopy).MayResumeBeforeAllPages);
        Assert.True(StrategyPolicy.For(StrategyKind.PostCopy).MayResumeBeforeAllPages);
        Assert.True(StrategyPolicy.For(StrategyKind.Hybrid).MayResumeBeforeAllPages);
        Assert.True(StrategyPolicy.For(StrategyKind.Auto).MayResumeBeforeAllPages);
        Assert.False(StrategyPolicy.For(StrategyKind.Auto).WarmUp);
    }
}
