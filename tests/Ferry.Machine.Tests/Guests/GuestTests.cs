using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Guests;

public sealed class GuestTests
{
    [Theory]
    [MemberData(nameof(GuestCase.Data), MemberType = typeof(GuestCase))]
    public void Guest_PrintsItsExpectedOutput_AndExitsZero(GuestCase c)
    {
        GuestImage image = GuestRunner.Load(c.Guest, c.Config);
        FerryResult result = GuestRunner.Run(image);
        Assert.True(result.Outcome == RunOutcome.GuestExited, result.ToString());
        Assert.Equal(c.Expected, result.Text);
        Assert.Equal(0, result.ExitStatus);
    }

    [Fact]
    public void EveryBuiltGuest_HasACase()
    {
        string[] covered = GuestCase.All.Select(c => c.Guest).Distinct().ToArray();
        Assert.NotEmpty(Repo.GuestNames);
        Assert.All(Repo.GuestNames, name => Assert.Contains(name, covered));
    }

    [Fact]
    public void Idle_InRealTimeMode_SleepsThroughWfi()
    {
        // Without icount the timer follows the host clock: 5 beats of 20 ms take at least ~100 ms.
        GuestImage image = GuestRunner.Load("idle", ("interval_ms", 20), ("beats", 5));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        FerryResult result = GuestRunner.Run(image, icount: false);
        Assert.Equal(RunOutcome.GuestExited, result.Outcome);
        Assert.Equal("idle: interval_ms=20 pages=4 beats=5\nbeat 1\nbeat 2\nbeat 3\nbeat 4\nbeat 5\n", result.Text);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(90), $"5 beats of 20 ms took {watch.Elapsed.TotalMilliseconds} ms");
        Assert.True(result.Instructions < 2_000_000, $"{result.Instructions} instructions: the guest busy-waited instead of sleeping");
    }

    [Fact]
    public void A_guest_that_sleeps_in_steps_shorter_than_a_millisecond_leaves_its_core_idle()
    {
        // dirty at 8 pages per ms of real time sleeps 125 µs between pages (dirty-slow's pace):
        // 3 passes over 1 MiB are 768 pages, about 96 ms. The hart must sleep in the kernel
        // between them, not poll the clock: the run's thread may use a fraction of that time.
        GuestImage image = GuestRunner.Load("dirty", ("size_mib", 1), ("rate", 8), ("passes", 3));
        GuestRunner.Run(GuestRunner.Load("dirty", ("size_mib", 1), ("rate", 8), ("passes", 1)), icount: false); // the JIT's compiles, on this thread, before the count
        long cpuBefore = ThreadCpu.Ticks();
        var wall = System.Diagnostics.Stopwatch.StartNew();
        FerryResult result = GuestRunner.Run(image, icount: false);
        double cpuMs = (ThreadCpu.Ticks() - cpuBefore) / 10_000.0;
        Assert.True(result.Outcome == RunOutcome.GuestExited, result.ToString());
        Assert.True(wall.Elapsed >= TimeSpan.FromMilliseconds(90), $"768 pages at 8 per ms took {wall.Elapsed.TotalMilliseconds} ms");
        Assert.True(cpuMs < 0.3 * wall.Elapsed.TotalMilliseconds, $"the run's thread used {cpuMs:0.0} ms of CPU in {wall.Elapsed.TotalMilliseconds:0.0} ms: it polled instead of sleeping");
    }

    [Fact]
    public void Compute_RetiresTwentyInstructionsPerIteration()
    {
        // README: the loop is exactly 20 instructions per iteration; setup and printing are small.
        FerryResult a = GuestRunner.Run(GuestRunner.Load("compute", ("iterations", 10000)));
        FerryResult b = GuestRunner.Run(GuestRunner.Load("compute", ("iterations", 20000)));
        Assert.Equal(20UL * 10000, b.Instructions - a.Instructions);
    }
}

public sealed class IsaElfTests
{
    /// <summary>Every ISA test under both engines (the translator translating every block on first entry).</summary>
    public static TheoryData<string, ExecutionEngine> Tests
    {
        get
        {
            var data = new TheoryData<string, ExecutionEngine>();
            foreach (string name in Repo.IsaTestNames)
            {
                foreach (ExecutionEngine e in Engines.Both)
                {
                    data.Add(name, e);
                }
            }

            return data;
        }
    }

    [IsaTheory]
    [MemberData(nameof(Tests))]
    public void IsaTest_Passes(string name, ExecutionEngine engine)
    {
        GuestImage image = GuestImage.Load(Path.Combine(Repo.IsaBin, name + ".elf"));
        FerryResult result = GuestRunner.Run(image, memory: 256UL << 20, maxInstructions: 1_000_000_000, engine: engine);
        string failLine = result.Text.Split('\n').FirstOrDefault(l => l.StartsWith("FAIL", StringComparison.Ordinal)) ?? "(no FAIL line)";
        Assert.True(result.Outcome == RunOutcome.GuestExited && result.ExitStatus == 0, $"{name}: {failLine}\n{result}");
        Assert.Contains($"PASS {name}", result.Text, StringComparison.Ordinal);
    }
}
