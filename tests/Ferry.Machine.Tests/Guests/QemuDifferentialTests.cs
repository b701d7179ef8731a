using Ferry.Machine.Board;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Guests;

/// <summary>The same image under QEMU 7.2 (the reference) and Ferry: console bytes and exit status must match.</summary>
public sealed class QemuDifferentialTests
{
    private static readonly TimeSpan QemuTimeout = TimeSpan.FromSeconds(60);

    public static TheoryData<GuestCase> Cases
    {
        get
        {
            var data = new TheoryData<GuestCase>();
            foreach (GuestCase c in GuestCase.All.Where(c => c.Guest != "idle"))
            {
                data.Add(c);
            }

            return data;
        }
    }

    [QemuTheory]
    [MemberData(nameof(Cases))]
    public void Guest_MatchesQemu(GuestCase c) => Compare(GuestRunner.Load(c.Guest, c.Config), GuestRunner.DefaultMemory);

    [QemuTheory(needsIsaTests: true)]
    [MemberData(nameof(IsaElfTests.Tests), MemberType = typeof(IsaElfTests))]
    public void IsaTest_MatchesQemu(string name) => Compare(GuestImage.Load(Path.Combine(Repo.IsaBin, name + ".elf")), 256UL << 20);

    private static void Compare(GuestImage image, ulong ferryMemory)
    {
        QemuResult qemu = Qemu.Run(image.Bytes, QemuTimeout);
        FerryResult ferry = GuestRunner.Run(image, memory: ferryMemory, maxInstructions: 2_000_000_000);
        Assert.True(ferry.Outcome == RunOutcome.GuestExited, ferry.ToString());
        Assert.True(qemu.Stdout.AsSpan().SequenceEqual(ferry.Console),
            $"{image.Name}: console differs\n--- QEMU (exit {qemu.ExitCode}):\n{System.Text.Encoding.ASCII.GetString(qemu.Stdout)}\n--- Ferry:\n{ferry.Text}\n--- QEMU stderr:\n{qemu.Stderr}");
        Assert.Equal(qemu.ExitCode, ferry.ExitStatus);
    }
}
