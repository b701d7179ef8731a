using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;

namespace Ferry.Tests.Shared;

/// <summary>Reports built by hand for tests of what reads or prints them (compiled into each test project that links this file).</summary>
internal static class SampleReports
{
    /// <summary>The smallest complete report: one page, no faults, no switchover.</summary>
    public static MigrationReport Minimal(MigrationOutcome outcome, VmLocation location, StrategyKind strategy) => new()
    {
        Id = "m1",
        Vm = "vm",
        Strategy = strategy,
        Outcome = outcome,
        VmLocation = location,
        Options = new OptionsReport(0, 20, 30, 60000, 64, true, 3, 3, 100, 64 << 20, false, 0, "Linear", 64, false, 32),
        StartedAt = DateTimeOffset.UnixEpoch,
        Bytes = new BytesReport(1, 2, 3, 4, 5, 15),
        Pages = new PagesReport(1, 1, 0, 0, 1, 0, 0, 0, 1),
        NetworkFaults = new FaultReport(0, 0, 0, 0, 0, 0),
        PagesArrived = new ArrivalReport(1, 0, 0, 0, 0),
        Prefetch = new PrefetchReport(0, 0, 0),
        Guest = new GuestReport(null, null, null, null, 0),
        Timeline = new TimelineReport(0, 0, []),
    };
}
