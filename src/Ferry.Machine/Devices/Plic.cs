using Ferry.Machine.State;

namespace Ferry.Machine.Devices;

/// <summary>
/// The platform-level interrupt controller at 0x0c00_0000, laid out and behaving as QEMU 7.2
/// virt's sifive_plic (hw/intc/sifive_plic.c, "MS" hart config):
///
///   0x00_0000 + 4*s        priority of source s (0..95; 3 bits, WARL: written value mod 8)
///   0x00_1000 + 4*w        pending bits, sources 32w..32w+31 (read-only)
///   0x00_2000 + 0x80*c     enable bits of context c (3 words)
///   0x20_0000 + 0x1000*c   threshold of context c (mod 8); +4: claim (read) / complete (write)
///
/// Contexts: 0 = hart 0 M mode (output MEIP), 1 = hart 0 S mode (output SEIP). Sources 1..95
/// (QEMU virt's num-sources 96 includes source 0, which never interrupts). Only aligned
/// 4-byte accesses are valid (others fault, as QEMU's access size check); unimplemented
/// registers read as zero and ignore writes.
///
/// Gateways as QEMU 7.2 as Debian ships it (with upstream a84be2ba, "pending is cleared only
/// when the interrupt is claimed"): every call that drives an input high sets the source
/// pending (devices drive their line at each state update, as QEMU's qemu_irq_raise, so a
/// source whose device still asserts it after a completion is pending again at the device's
/// next update); driving it low changes nothing. A claim returns the pending, enabled,
/// unclaimed source of the highest priority above the context's threshold (the lowest number
/// among equals), clears its pending bit and marks it claimed, so it cannot be claimed again
/// before it is completed. A completion unclaims the source whatever the context's enables
/// say (QEMU does not check them, though the PLIC specification says to ignore a completion
/// of a source not enabled for the context). A context's output is high while it has a
/// claimable source; it is recomputed after an input rises, a claim, a completion, a priority
/// or threshold write, not after an enable write (as QEMU: a newly enabled pending source
/// shows at the next of those events). These points were checked register by register
/// against qemu-system-riscv64 (tests/Ferry.Machine.Tests/Devices/InterruptQemuTests.cs).
/// </summary>
public sealed class Plic : IMmioDevice, IInterruptSink
{
    public const ulong DefaultBase = 0x0C00_0000;

    /// <summary>Sources including source 0 (QEMU's VIRT_IRQCHIP_NUM_SOURCES).</summary>
    public const int SourceCount = 96;

    /// <summary>The highest priority (VIRT_IRQCHIP_NUM_PRIO_BITS = 3).</summary>
    public const uint MaxPriority = 7;

    /// <summary>Hart 0 M mode and hart 0 S mode.</summary>
    public const int ContextCount = 2;

    public const int MachineContext = 0, SupervisorContext = 1;

    /// <summary>32-bit words of a source bitmap (pending, claimed, enables).</summary>
    public const int BitmapWords = (SourceCount + 31) / 32;

    private const ulong PendingBase = 0x1000, EnableBase = 0x2000, EnableStride = 0x80;
    private const ulong ContextBase = 0x20_0000, ContextStride = 0x1000;

    private readonly InterruptLine[] _outputs;
    private readonly uint[] _priority = new uint[SourceCount];
    private readonly uint[] _pending = new uint[BitmapWords];
    private readonly uint[] _claimed = new uint[BitmapWords];
    private readonly uint[] _enable = new uint[ContextCount * BitmapWords];
    private readonly uint[] _threshold = new uint[ContextCount];

    /// <param name="machineExternal">context 0's output (the board wires it to MEIP)</param>
    /// <param name="supervisorExternal">context 1's output (SEIP)</param>
    public Plic(InterruptLine machineExternal, InterruptLine supervisorExternal)
    {
        _outputs = [machineExternal, supervisorExternal];
    }

    public string Name => "plic";

    public ulong BaseAddress => DefaultBase;

    public ulong Size => 0x60_0000;

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = 0;
        if (size != 4 || (offset & 3) != 0)
        {
            return false;
        }

        if (offset < SourceCount * 4)
        {
            value = _priority[offset >> 2];
        }
        else if (offset - PendingBase < BitmapWords * 4)
        {
            value = _pending[(offset - PendingBase) >> 2];
        }
        else if (offset - EnableBase < ContextCount * EnableStride)
        {
            ulong word = (offset & (EnableStride - 1)) >> 2;
            if (word < BitmapWords)
            {
                value = _enable[(((offset - EnableBase) / EnableStride) * BitmapWords) + word];
            }
        }
        else if (offset - ContextBase < ContextCount * ContextStride)
        {
            int context = (int)((offset - ContextBase) / ContextStride);
            switch (offset & (ContextStride - 1))
            {
                case 0:
                    value = _threshold[context];
                    break;
                case 4:
                    value = Claim(context);
                    break;
            }
        }

        return true;
    }

    public bool Write(ulong offset, int size, ulong value)
    {
        if (size != 4 || (offset & 3) != 0)
        {
            return false;
        }

        uint v = (uint)value;
        if (offset < SourceCount * 4)
        {
            _priority[offset >> 2] = v % (MaxPriority + 1);
            UpdateOutputs();
        }
        else if (offset - EnableBase < ContextCount * EnableStride)
        {
            ulong word = (offset & (EnableStride - 1)) >> 2;
            if (word < BitmapWords)
            {
                _enable[(((offset - EnableBase) / EnableStride) * BitmapWords) + word] = v;
            }
        }
        else if (offset - ContextBase < ContextCount * ContextStride)
        {
            int context = (int)((offset - ContextBase) / ContextStride);
            switch (offset & (ContextStride - 1))
            {
                case 0:
                    _threshold[context] = v % (MaxPriority + 1);
                    UpdateOutputs();
                    break;
                case 4 when v < SourceCount:
                    _claimed[v >> 5] &= ~(1u << (int)(v & 31));
                    UpdateOutputs();
                    break;
            }
        }

        return true;
    }

    /// <summary>A device's line into source <paramref name="input"/> (1..95): high sets it pending, low does nothing.</summary>
    public void SetInput(int input, bool level)
    {
        if (input <= 0 || input >= SourceCount)
        {
            throw new ArgumentOutOfRangeException(nameof(input), input, $"PLIC sources are 1..{SourceCount - 1}");
        }

        if (level)
        {
            _pending[input >> 5] |= 1u << (input & 31);
            UpdateOutputs();
        }
    }

    /// <summary>True if source <paramref name="source"/> is pending (tests, diagnostics).</summary>
    public bool IsPending(int source) => (_pending[source >> 5] & (1u << (source & 31))) != 0;

    public PlicState SaveState() => new(
        (uint[])_priority.Clone(), (uint[])_pending.Clone(), (uint[])_claimed.Clone(), (uint[])_enable.Clone(), (uint[])_threshold.Clone());

    public void RestoreState(PlicState state)
    {
        state.Validate();
        state.Priority.CopyTo(_priority);
        state.Pending.CopyTo(_pending);
        state.Claimed.CopyTo(_claimed);
        state.Enable.CopyTo(_enable);
        state.Threshold.CopyTo(_threshold);
        UpdateOutputs();
    }

    /// <summary>The source a claim by <paramref name="context"/> would return now, 0 for none.</summary>
    private uint Best(int context)
    {
        uint best = 0, bestPriority = _threshold[context];
        for (int w = 0; w < BitmapWords; w++)
        {
            uint candidates = _pending[w] & ~_claimed[w] & _enable[(context * BitmapWords) + w];
            while (candidates != 0)
            {
                int source = (w << 5) + System.Numerics.BitOperations.TrailingZeroCount(candidates);
                candidates &= candidates - 1;
                if (_priority[source] > bestPriority)
                {
                    best = (uint)source;
                    bestPriority = _priority[source];
                }
            }
        }

        return best;
    }

    private uint Claim(int context)
    {
        uint source = Best(context);
        if (source != 0)
        {
            _pending[source >> 5] &= ~(1u << (int)(source & 31));
            _claimed[source >> 5] |= 1u << (int)(source & 31);
        }

        UpdateOutputs();
        return source;
    }

    private void UpdateOutputs()
    {
        for (int c = 0; c < ContextCount; c++)
        {
            _outputs[c].Set(Best(c) != 0);
        }
    }
}

/// <summary>The PLIC's registers (bitmaps in 32-bit words, enables context by context), as QEMU's vmstate.</summary>
public sealed record PlicState(uint[] Priority, uint[] Pending, uint[] Claimed, uint[] Enable, uint[] Threshold)
{
    public static readonly StateSection<PlicState> Section = new("PLIC", 1, 1024, Write, Read);

    /// <summary>Throws <see cref="InvalidDataException"/> unless every field is one the PLIC can hold.</summary>
    public void Validate()
    {
        if (Priority.Length != Plic.SourceCount || Pending.Length != Plic.BitmapWords || Claimed.Length != Plic.BitmapWords
            || Enable.Length != Plic.ContextCount * Plic.BitmapWords || Threshold.Length != Plic.ContextCount)
        {
            throw new InvalidDataException("PLIC state has the wrong number of registers");
        }

        foreach (uint p in Priority)
        {
            if (p > Plic.MaxPriority)
            {
                throw new InvalidDataException($"PLIC priority {p} exceeds {Plic.MaxPriority}");
            }
        }

        foreach (uint t in Threshold)
        {
            if (t > Plic.MaxPriority)
            {
                throw new InvalidDataException($"PLIC threshold {t} exceeds {Plic.MaxPriority}");
            }
        }

        if (((Pending[0] | Claimed[0]) & 1) != 0)
        {
            throw new InvalidDataException("PLIC source 0 cannot be pending or claimed");
        }
    }

    private static void Write(BinaryWriter w, PlicState s)
    {
        foreach (uint[] words in new[] { s.Priority, s.Pending, s.Claimed, s.Enable, s.Threshold })
        {
            foreach (uint v in words)
            {
                w.Write(v);
            }
        }
    }

    private static PlicState Read(BinaryReader r)
    {
        var state = new PlicState(
            Words(r, Plic.SourceCount), Words(r, Plic.BitmapWords), Words(r, Plic.BitmapWords),
            Words(r, Plic.ContextCount * Plic.BitmapWords), Words(r, Plic.ContextCount));
        state.Validate();
        return state;
    }

    private static uint[] Words(BinaryReader r, int count)
    {
        var words = new uint[count];
        for (int i = 0; i < count; i++)
        {
            words[i] = r.ReadUInt32();
        }

        return words;
    }
}
