using Ferry.Machine.Cpu;

namespace Ferry.Machine.Tests.Support;

/// <summary>
/// Executes single instructions: each distinct encoding gets its own slot in a code area, the
/// test sets registers, points the pc at the slot and runs exactly one instruction. Reuses one
/// machine across many samples (property tests), so it is not thread-safe.
/// </summary>
internal sealed class InsnBench : IDisposable
{
    private const ulong SlotArea = Rig.RamBase + 0x4_0000;
    private readonly Dictionary<(uint Bits, int Length), ulong> _slots = [];
    private ulong _next = SlotArea;

    public InsnBench(ulong memoryMiB = 4) => Rig = new Rig(memoryMiB);

    public Rig Rig { get; }

    /// <summary>The slot address of an instruction (written on first use).</summary>
    public ulong Place(uint bits, int length)
    {
        if (!_slots.TryGetValue((bits, length), out ulong at))
        {
            at = _next;
            _next += 4;
            byte[] b = length == 2 ? [(byte)bits, (byte)(bits >> 8)] : BitConverter.GetBytes(bits);
            Rig.Memory.WritePhysical(at, b);
            _slots[(bits, length)] = at;
        }

        return at;
    }

    /// <summary>Runs one instruction at its slot; returns the pc after it. Fails if it trapped.</summary>
    public ulong Step(uint bits, int length = 4)
    {
        ulong at = Place(bits, length);
        Rig.Hart.Pc = at;
        ulong before = Rig.Hart.InstructionsRetired;
        Rig.Step(1);
        Assert.True(Rig.Hart.InstructionsRetired == before + 1,
            $"instruction 0x{bits:x} did not retire: pc=0x{Rig.Hart.Pc:x} mcause={Rig.State.Mcause} mtval=0x{Rig.State.Mtval:x}");
        return Rig.Hart.Pc;
    }

    /// <summary>rd = op(rs1 = a, rs2 = b) for an instruction reading a1, a2 and writing a0.</summary>
    public ulong Exec(uint bits, ulong a, ulong b = 0)
    {
        Rig.SetX(R.A0, 0xDEAD_BEEF_DEAD_BEEF).SetX(R.A1, a).SetX(R.A2, b);
        ulong pc = Step(bits);
        Assert.Equal(Place(bits, 4) + 4, pc);
        return Rig.X(R.A0);
    }

    /// <summary>Runs one compressed instruction; fails unless the pc moved on by 2.</summary>
    public void ExecC(ushort bits)
    {
        ulong pc = Step(bits, 2);
        Assert.Equal(Place(bits, 2) + 2, pc);
    }

    /// <summary>Runs an instruction that must trap; returns (mcause, mtval, mepc).</summary>
    public (ulong Cause, ulong Tval, ulong Epc) Trap(uint bits, int length = 4)
    {
        ulong at = Place(bits, length);
        Rig.Hart.Pc = at;
        ulong before = Rig.Hart.InstructionsRetired;
        Rig.Step(1);

        // The faulting instruction did not retire; the handler's first instruction (4 bytes) did.
        Assert.True(Rig.Hart.InstructionsRetired == before + 1 && Rig.Hart.Pc == Rig.TrapHandler + 4,
            $"expected a trap from 0x{bits:x}: pc=0x{Rig.Hart.Pc:x}");
        HartState s = Rig.State;
        return (s.Mcause, s.Mtval, s.Mepc);
    }

    public void Dispose() => Rig.Dispose();
}
