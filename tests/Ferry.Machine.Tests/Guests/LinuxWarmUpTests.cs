using Ferry.Machine.Board;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Guests;

/// <summary>The host's Linux warm-up really boots Linux (a warm-up that did nothing would compile nothing ahead of a real VM).</summary>
public sealed class LinuxWarmUpTests
{
    [Fact]
    public void Boots_to_ready_and_a_little_further()
    {
        (ulong instructions, bool ready) = LinuxWarmUp.Boot(LinuxGuest.Files(LinuxBoot.DefaultCommandLine + " ferry.workload=idle"));
        Assert.True(ready, $"the warm-up did not see '{LinuxWarmUp.Ready}' within {instructions:N0} instructions");
        Assert.InRange(instructions, 10_000_000UL, LinuxWarmUp.MaxInstructions);
    }

    [Fact]
    public void A_cancelled_warm_up_stops_at_once()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        (ulong instructions, bool ready) = LinuxWarmUp.Boot(LinuxGuest.Files(LinuxBoot.DefaultCommandLine), cancellation: cancelled.Token);
        Assert.False(ready);
        Assert.Equal(0UL, instructions);
    }
}
