namespace Ferry.Machine.Cpu;

/// <summary>
/// The architectural state of one hart: everything needed to rebuild it exactly (snapshots,
/// migration switchover, the state digest). Immutable; the live <see cref="Hart"/> is rebuilt
/// from (construction arguments, this).
/// </summary>
public sealed record HartState
{
    public required ulong Pc { get; init; }

    /// <summary>x0..x31 (x0 is always 0).</summary>
    public required ulong[] X { get; init; }

    public required PrivilegeMode Privilege { get; init; }

    public required ulong InstructionsRetired { get; init; }

    /// <summary>minstret/mcycle as the guest sees them, minus <see cref="InstructionsRetired"/> (the guest may write them).</summary>
    public ulong CounterOffset { get; init; }

    /// <summary>Instruction-counted virtual clock: retired instructions plus time skipped in WFI.</summary>
    public required ulong VirtualClock { get; init; }

    public required bool WaitingForInterrupt { get; init; }

    /// <summary>LR reservation address, or ulong.MaxValue for none.</summary>
    public required ulong Reservation { get; init; }

    public required ulong Mstatus { get; init; }
    public required ulong Medeleg { get; init; }
    public required ulong Mideleg { get; init; }
    public required ulong Mie { get; init; }

    /// <summary>The software-writable mip bits (SSIP, STIP, SEIP); device lines are the devices' state.</summary>
    public required ulong MipSoftware { get; init; }

    public required ulong Mtvec { get; init; }
    public required ulong Mscratch { get; init; }
    public required ulong Mepc { get; init; }
    public required ulong Mcause { get; init; }
    public required ulong Mtval { get; init; }
    public required ulong Mcounteren { get; init; }
    public required ulong Menvcfg { get; init; }
    public required ulong Mcountinhibit { get; init; }
    public required ulong Stvec { get; init; }
    public required ulong Sscratch { get; init; }
    public required ulong Sepc { get; init; }
    public required ulong Scause { get; init; }
    public required ulong Stval { get; init; }
    public required ulong Scounteren { get; init; }
    public required ulong Senvcfg { get; init; }
    public required ulong Satp { get; init; }

    /// <summary>pmpcfg0 and pmpcfg2 (16 entries, RV64 packs 8 per register).</summary>
    public required ulong[] PmpCfg { get; init; }

    public required ulong[] PmpAddr { get; init; }

    /// <summary>f0..f31 (raw 64-bit contents; single-precision values NaN-boxed).</summary>
    public ulong[] F { get; init; } = new ulong[32];

    /// <summary>fcsr: frm in bits 7:5, fflags in bits 4:0.</summary>
    public uint Fcsr { get; init; }
}
