using System.Buffers.Binary;
using System.Numerics;

namespace Ferry.Machine.Tests.Support;

/// <summary>A position in a program, bound once with <see cref="ProgramBuilder.Bind"/>.</summary>
internal sealed class Label
{
    public ulong? Address { get; set; }
}

/// <summary>
/// Builds a program at a fixed guest address: 32-bit and compressed instructions, data, labels
/// with forward references, and a few pseudo-instructions (li, la, j, the finisher exit).
/// </summary>
internal sealed class ProgramBuilder
{
    /// <summary>The sifive_test finisher (QEMU virt): writing 0x5555 ends the run with status 0.</summary>
    public const ulong Finisher = 0x0010_0000;

    private readonly List<byte> _bytes = [];
    private readonly List<(int Offset, Label Label, Func<int, uint> Encode)> _fixups = [];
    private readonly List<(int Offset, Label Label, Func<int, ushort> Encode)> _cfixups = [];

    public ProgramBuilder(ulong origin) => Origin = origin;

    public ulong Origin { get; }

    /// <summary>The address of the next emitted byte.</summary>
    public ulong Here => Origin + (ulong)_bytes.Count;

    public int Size => _bytes.Count;

    public ProgramBuilder Emit(params uint[] instructions)
    {
        foreach (uint insn in instructions)
        {
            _bytes.Add((byte)insn);
            _bytes.Add((byte)(insn >> 8));
            _bytes.Add((byte)(insn >> 16));
            _bytes.Add((byte)(insn >> 24));
        }

        return this;
    }

    public ProgramBuilder EmitC(params ushort[] instructions)
    {
        foreach (ushort insn in instructions)
        {
            _bytes.Add((byte)insn);
            _bytes.Add((byte)(insn >> 8));
        }

        return this;
    }

    public ProgramBuilder Data(ReadOnlySpan<byte> data)
    {
        _bytes.AddRange(data.ToArray());
        return this;
    }

    public ProgramBuilder Dword(ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return Data(b);
    }

    /// <summary>Pads with zero bytes up to <paramref name="address"/>.</summary>
    public ProgramBuilder PadTo(ulong address)
    {
        if (address < Here)
        {
            throw new InvalidOperationException($"cannot pad back from 0x{Here:x} to 0x{address:x}");
        }

        while (Here < address)
        {
            _bytes.Add(0);
        }

        return this;
    }

    public ProgramBuilder Align(int bytes)
    {
        while (Here % (ulong)bytes != 0)
        {
            _bytes.Add(0);
        }

        return this;
    }

    public Label NewLabel() => new();

    public Label Bind(Label label)
    {
        if (label.Address is not null)
        {
            throw new InvalidOperationException("label bound twice");
        }

        label.Address = Here;
        return label;
    }

    /// <summary>A label bound here.</summary>
    public Label Mark() => Bind(NewLabel());

    /// <summary>Emits an instruction whose encoding needs the pc-relative offset of <paramref name="target"/>.</summary>
    public ProgramBuilder Emit(Label target, Func<int, uint> encode)
    {
        _fixups.Add((_bytes.Count, target, encode));
        return Emit(0u);
    }

    public ProgramBuilder EmitC(Label target, Func<int, ushort> encode)
    {
        _cfixups.Add((_bytes.Count, target, encode));
        return EmitC((ushort)0);
    }

    /// <summary>j target (jal x0).</summary>
    public ProgramBuilder J(Label target) => Emit(target, off => Asm.Jal(0, off));

    /// <summary>Loads a 64-bit constant (lui/addiw/slli/addi, as LLVM's RISCVMatInt).</summary>
    public ProgramBuilder Li(int rd, ulong value)
    {
        foreach (uint insn in LiSequence(rd, (long)value))
        {
            Emit(insn);
        }

        return this;
    }

    public ProgramBuilder Li(int rd, long value) => Li(rd, (ulong)value);

    /// <summary>Loads the address of a label (auipc + addi).</summary>
    public ProgramBuilder La(int rd, Label target)
    {
        _fixups.Add((_bytes.Count, target, off => Asm.Auipc(rd, (off + 0x800) >> 12)));
        Emit(0u);

        // The addi's offset is relative to itself; the auipc is 4 bytes earlier.
        _fixups.Add((_bytes.Count, target, off => Asm.Addi(rd, rd, (off + 4) - (((off + 4 + 0x800) >> 12) << 12))));
        return Emit(0u);
    }

    /// <summary>csrw csr, value (through <paramref name="scratch"/>).</summary>
    public ProgramBuilder CsrWrite(int csr, ulong value, int scratch = R.T0) => Li(scratch, value).Emit(Asm.Csrw(csr, scratch));

    /// <summary>Ends the run: writes 0x5555 to the finisher (clobbers t5, t6).</summary>
    public ProgramBuilder Exit(int status = 0)
    {
        Li(R.T6, Finisher);
        Li(R.T5, status == 0 ? 0x5555UL : ((ulong)status << 16) | 0x3333);
        return Emit(Asm.Sw(R.T5, R.T6, 0));
    }

    /// <summary>An endless loop (j .): a program that must not go further.</summary>
    public ProgramBuilder Halt() => Emit(Asm.Jal(0, 0));

    public byte[] Build()
    {
        byte[] bytes = [.. _bytes];
        foreach ((int offset, Label label, Func<int, uint> encode) in _fixups)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), encode(Offset(label, offset)));
        }

        foreach ((int offset, Label label, Func<int, ushort> encode) in _cfixups)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(offset), encode(Offset(label, offset)));
        }

        return bytes;
    }

    private int Offset(Label label, int offset)
    {
        ulong target = label.Address ?? throw new InvalidOperationException("label never bound");
        return checked((int)((long)target - (long)(Origin + (ulong)offset)));
    }

    public static List<uint> LiSequence(int rd, long value)
    {
        var seq = new List<uint>();
        Materialize(rd, value, seq);
        return seq;
    }

    private static void Materialize(int rd, long value, List<uint> seq)
    {
        if (value is >= int.MinValue and <= int.MaxValue)
        {
            int hi20 = (int)(((value + 0x800) >> 12) & 0xFFFFF);
            int lo12 = (int)(value << 52 >> 52);
            if (hi20 != 0)
            {
                seq.Add(Asm.Lui(rd, hi20));
            }

            if (lo12 != 0 || hi20 == 0)
            {
                seq.Add(hi20 != 0 ? Asm.Addiw(rd, rd, lo12) : Asm.Addi(rd, 0, lo12));
            }

            return;
        }

        long low = value << 52 >> 52;
        long rest = value - low;
        int shift = BitOperations.TrailingZeroCount((ulong)rest);
        Materialize(rd, rest >> shift, seq);
        seq.Add(Asm.Slli(rd, rd, shift));
        if (low != 0)
        {
            seq.Add(Asm.Addi(rd, rd, (int)low));
        }
    }
}
