using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Guests;

/// <summary>The same image under QEMU 7.2 (the reference) and Ferry: console bytes and exit status must match.</summary>
public sealed class QemuDifferentialTests
{
    private static readonly TimeSpan QemuTimeout = TimeSpan.FromSeconds(60);

    public static TheoryData<GuestCase, ExecutionEngine> Cases
    {
        get
        {
            var data = new TheoryData<GuestCase, ExecutionEngine>();
            foreach (GuestCase c in GuestCase.All.Where(c => c.Guest != "idle"))
            {
                foreach (ExecutionEngine e in Engines.Both)
                {
                    data.Add(c, e);
                }
            }

            return data;
        }
    }

    // Under both engines: the translator (every block translated on first entry) must match QEMU as the interpreter does.
    [QemuTheory]
    [MemberData(nameof(Cases))]
    public void Guest_MatchesQemu(GuestCase c, ExecutionEngine engine) => Compare(GuestRunner.Load(c.Guest, c.Config), GuestRunner.DefaultMemory, engine);

    [QemuTheory(needsIsaTests: true)]
    [MemberData(nameof(IsaElfTests.Tests), MemberType = typeof(IsaElfTests))]
    public void IsaTest_MatchesQemu(string name, ExecutionEngine engine) => Compare(GuestImage.Load(Path.Combine(Repo.IsaBin, name + ".elf")), 256UL << 20, engine);

    private static void Compare(GuestImage image, ulong ferryMemory, ExecutionEngine engine)
    {
        QemuResult qemu = Qemu.Run(image.Bytes, QemuTimeout);
        FerryResult ferry = GuestRunner.Run(image, memory: ferryMemory, maxInstructions: 2_000_000_000, engine: engine);
        Assert.True(ferry.Outcome == RunOutcome.GuestExited, ferry.ToString());
        Assert.True(qemu.Stdout.AsSpan().SequenceEqual(ferry.Console),
            $"{image.Name}: console differs\n--- QEMU (exit {qemu.ExitCode}):\n{System.Text.Encoding.ASCII.GetString(qemu.Stdout)}\n--- Ferry:\n{ferry.Text}\n--- QEMU stderr:\n{qemu.Stderr}");
        Assert.Equal(qemu.ExitCode, ferry.ExitStatus);
    }
}
