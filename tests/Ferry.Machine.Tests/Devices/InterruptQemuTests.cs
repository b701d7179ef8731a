using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Devices;

/// <summary>
/// The UART and the PLIC driven through the same register accesses under QEMU 7.2 (the
/// reference) and Ferry: every value read, mip after each step that moves a line, and the
/// console must be identical.
/// </summary>
public sealed class InterruptQemuTests
{
    private const ulong U = 0x1000_0000, P = 0x0C00_0000;
    private const ulong Pending0 = P + 0x1000, EnableM = P + 0x2000, EnableS = P + 0x2080;
    private const ulong ThresholdM = P + 0x20_0000, ClaimM = P + 0x20_0004, ThresholdS = P + 0x20_1000, ClaimS = P + 0x20_1004;
    private const ulong UartPriority = P + (4 * VirtMachine.UartIrq);

    /// <summary>Register by register: reset values, divisor latch, scratch, FIFO control, PLIC register legality.</summary>
    internal static DeviceProbe Registers() => new DeviceProbe()
        .Read(U + 1, 1).Read(U + 2, 1).Read(U + 3, 1).Read(U + 4, 1).Read(U + 5, 1).Read(U + 6, 1).Read(U + 7, 1)
        .Write(U + 3, 1, 0x80).Read(U + 0, 1).Read(U + 1, 1)
        .Write(U + 0, 1, 0x01).Write(U + 1, 1, 0x00).Read(U + 0, 1).Read(U + 1, 1)
        .Write(U + 3, 1, 0x03).Read(U + 3, 1).Read(U + 1, 1)
        .Write(U + 7, 1, 0xA5).Read(U + 7, 1)
        .Write(U + 2, 1, 0x01).Read(U + 2, 1).Write(U + 2, 1, 0xC7).Read(U + 2, 1).Write(U + 2, 1, 0x00).Read(U + 2, 1)
        .Write(U + 4, 1, 0xFF).Read(U + 4, 1).Write(U + 4, 1, 0x0B).Read(U + 4, 1)
        .Write(UartPriority, 4, 0xF).Read(UartPriority, 4).Write(UartPriority, 4, 9).Read(UartPriority, 4)
        .Write(P + (4 * 95), 4, 3).Read(P + (4 * 95), 4).Read(P + (4 * 96), 4).Read(P, 4)
        .Write(EnableS, 4, 0xFFFF_FFFF).Read(EnableS, 4).Write(EnableS + 8, 4, 0xFFFF_FFFF).Read(EnableS + 8, 4).Read(EnableS + 12, 4)
        .Write(EnableS, 4, 0).Write(EnableS + 8, 4, 0).Read(EnableS, 4)
        .Write(ThresholdS, 4, 9).Read(ThresholdS, 4).Write(ThresholdS, 4, 0).Read(ThresholdS, 4).Read(ThresholdM, 4)
        .Read(Pending0, 4).Read(ClaimS, 4).Mip();

    /// <summary>The THR-empty interrupt through the PLIC's S and M contexts: pending, claim, complete, threshold, loopback receive.</summary>
    internal static DeviceProbe InterruptFlow() => new DeviceProbe()
        .Write(UartPriority, 4, 3).Write(EnableS, 4, 1u << VirtMachine.UartIrq).Mip()
        .Write(U + 1, 1, 0x02).Read(Pending0, 4).Mip() // THRI on: THR empty, source 10 pends, SEIP
        .Read(U + 2, 1).Read(Pending0, 4).Mip() // reading IIR clears THR empty: the line falls, pending clears
        .Write(U + 1, 1, 0x00).Write(U + 1, 1, 0x02).Read(Pending0, 4).Mip() // THRI toggled: raised again
        .Read(ClaimS, 4).Read(Pending0, 4).Mip().Read(ClaimS, 4) // claimed: not pending, nothing more to claim
        .Write(U + 0, 1, '.').Read(Pending0, 4).Mip() // a byte out: the line falls and rises: pending, still claimed
        .Write(ClaimS, 4, VirtMachine.UartIrq).Mip().Read(ClaimS, 4) // completed: claimable again
        .Write(U + 1, 1, 0x00).Write(ClaimS, 4, VirtMachine.UartIrq).Read(Pending0, 4).Mip() // line low at completion
        .Write(ThresholdS, 4, 3).Write(U + 1, 1, 0x02).Mip().Read(ClaimS, 4).Read(Pending0, 4) // priority 3 is not above 3
        .Write(ThresholdS, 4, 2).Mip()
        .Write(EnableM, 4, 1u << VirtMachine.UartIrq).Mip() // both contexts: MEIP and SEIP
        .Read(ClaimM, 4).Mip() // a claim by one context hides the source from both
        .Write(EnableS, 4, 0).Write(U + 0, 1, '.').Write(ClaimS, 4, VirtMachine.UartIrq).Mip() // completion through a context the source is not enabled in
        .Read(ClaimM, 4).Write(ClaimM, 4, 200).Mip().Write(ClaimM, 4, VirtMachine.UartIrq)
        .Write(U + 2, 1, 0x01).Read(U + 2, 1).Read(U + 2, 1).Mip() // FIFOs on: XMIT reset raises THR empty (0xc2), IIR read clears it
        .Write(U + 1, 1, 0x00).Read(ClaimM, 4).Write(ClaimM, 4, VirtMachine.UartIrq)
        .Write(U + 4, 1, 0x1F).Read(U + 6, 1) // loopback: MSR mirrors MCR
        .Write(U + 2, 1, 0x00).Write(U + 1, 1, 0x01).Write(U + 0, 1, 'A') // non-FIFO loopback receive, RDI on
        .Read(U + 5, 1).Read(U + 2, 1).Read(Pending0, 4).Mip().Read(U + 0, 1).Read(U + 5, 1).Read(U + 2, 1).Read(Pending0, 4).Mip()
        .Write(U + 2, 1, 0x01).Write(U + 0, 1, 'B').Read(U + 5, 1).Read(U + 2, 1).Read(U + 0, 1).Read(U + 2, 1).Mip()
        .Write(U + 1, 1, 0x03).Write(U + 0, 1, 'C').Read(U + 2, 1).Read(U + 0, 1).Read(U + 2, 1).Read(U + 2, 1).Mip() // RDI before THRI
        .Write(U + 1, 1, 0x00).Write(U + 4, 1, 0x08).Read(U + 6, 1).Read(U + 5, 1);

    public static TheoryData<string> Probes => ["registers", "flow"];

    private static DeviceProbe Probe(string name) => name == "registers" ? Registers() : InterruptFlow();

    [QemuTheory]
    [MemberData(nameof(Probes))]
    public void Probe_MatchesQemu(string name)
    {
        DeviceProbe probe = Probe(name);
        byte[] elf = probe.Elf();
        QemuResult qemu = Qemu.Run(elf, TimeSpan.FromSeconds(60));
        FerryResult ferry = GuestRunner.Run(GuestImage.Parse(name, elf), memory: 256UL << 20, maxInstructions: 10_000_000);
        string expected = Encoding.ASCII.GetString(qemu.Stdout), actual = ferry.Text;
        Assert.True(expected == actual, $"{name}: differs from QEMU\n{Diff(expected, actual)}\n--- QEMU stderr:\n{qemu.Stderr}");
        Assert.Equal(probe.ReadCount, actual.Count(c => c == '\n'));
        Assert.Equal(qemu.ExitCode, ferry.ExitStatus);
    }

    private static string Diff(string qemu, string ferry)
    {
        string[] a = qemu.Split('\n'), b = ferry.Split('\n');
        var sb = new StringBuilder();
        for (int i = 0; i < Math.Max(a.Length, b.Length); i++)
        {
            string x = i < a.Length ? a[i] : "(none)", y = i < b.Length ? b[i] : "(none)";
            sb.AppendLine($"{i,3} {(x == y ? "  " : "!=")} QEMU {x,-20} Ferry {y}");
        }

        return sb.ToString();
    }
}
