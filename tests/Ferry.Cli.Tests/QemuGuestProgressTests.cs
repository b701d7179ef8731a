using System.Diagnostics;
using Ferry.Cli.Bench;

namespace Ferry.Cli.Tests;

/// <summary>QEMU's guest speed from console progress, for bare-metal guests and the same workloads as Linux processes.</summary>
public sealed class QemuGuestProgressTests
{
    private static readonly long Second = Stopwatch.Frequency;

    [Fact]
    public void BareMetalKvstore_125InstructionsPerOp()
    {
        QemuConsoleLine[] lines =
        [
            new(0, "kvstore: table_mib=8 hot_pct=2 hot_ops_pct=95 put_pct=10 report_every=20000 ops=0"),
            new(Second, "ops 20000 hits 1 sum 0x1"),
            new(2 * Second, "ops 40000 hits 2 sum 0x2"),
            new(3 * Second, "ops 60000 hits 3 sum 0x3"),
        ];
        Assert.Equal(20000 * 125 / 1e6, QemuGuestProgress.EstimateMips(lines)!.Value, 6);
    }

    /// <summary>
    /// Linux's boot log has "word: key=value" lines before /init runs the workload (here
    /// "workingset: ..."): the workload's own config line after "ferry-init: ready" names it.
    /// </summary>
    [Fact]
    public void LinuxKvstore_ConfigLineAfterReady_183InstructionsPerOp()
    {
        QemuConsoleLine[] lines =
        [
            new(0, "Kernel command line: console=ttyS0 ferry.workload=kvstore ferry.table_mib=8"),
            new(0, "workingset: timestamp_bits=62 max_order=14 bucket_order=0"),
            new(0, "ferry-init: ready\r"),
            new(0, "kvstore: table_mib=8 hot_pct=2 hot_ops_pct=95 put_pct=10 report_every=20000 ops=0"),
            new(Second, "ops 20000 hits 1 sum 0x1"),
            new(2 * Second, "ops 40000 hits 2 sum 0x2"),
            new(3 * Second, "ops 60000 hits 3 sum 0x3\r"),
        ];
        Assert.Equal(20000 * 183 / 1e6, QemuGuestProgress.EstimateMips(lines)!.Value, 6);
    }

    [Fact]
    public void LinuxBootLogWithoutWorkloadLine_NoEstimate()
    {
        QemuConsoleLine[] lines =
        [
            new(0, "workingset: timestamp_bits=62 max_order=14 bucket_order=0"),
            new(Second, "ops 20000 hits 1 sum 0x1"),
            new(2 * Second, "ferry-init: ready"),
            new(3 * Second, "ops 40000 hits 2 sum 0x2"),
            new(4 * Second, "ops 60000 hits 3 sum 0x3"),
            new(5 * Second, "ops 80000 hits 3 sum 0x3"),
        ];
        Assert.Null(QemuGuestProgress.EstimateMips(lines));
    }

    /// <summary>The warm-up waits for progress lines only from a guest that prints them (so an idle guest costs no wait).</summary>
    [Fact]
    public void ReportsProgress_OnlyOnceAMeasuredGuestsConfigLineIsSeen()
    {
        QemuConsoleLine[] booting = [new(0, "workingset: timestamp_bits=62 max_order=14 bucket_order=0")];
        Assert.False(QemuGuestProgress.ReportsProgress(booting));
        QemuConsoleLine[] kvstore = [.. booting, new(0, "ferry-init: ready"), new(0, "kvstore: table_mib=8 report_every=20000 ops=0"), new(Second, "ops 20000 hits 1 sum 0x1")];
        Assert.True(QemuGuestProgress.ReportsProgress(kvstore));
        Assert.Null(QemuGuestProgress.EstimateMips(kvstore)); // one line: not yet a speed, so the warm-up goes on
        Assert.False(QemuGuestProgress.ReportsProgress([new(0, "ferry-init: ready"), new(0, "idle: interval_ms=1 pages=4")]));
        Assert.True(QemuGuestProgress.ReportsProgress([new(0, "verify: size_mib=8")]));
        Assert.False(QemuGuestProgress.ReportsProgress([new(0, "dirty: size_mib=8 rate=4")])); // paced: no measure
    }
}
