using System.Runtime.CompilerServices;

namespace Ferry.Machine.Cpu;

// Instruction semantics grouped by extension. Pure functions on register values, shared by the
// interpreter loop (Hart.Run) and the translator (Translation/BlockTranslator.cs), whose code
// calls the same functions. Everything here is small and inlined into the dispatch switch.

/// <summary>RV64I: the arithmetic that is more than one C# operator.</summary>
internal static class Rv64I
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SextW(ulong v) => (ulong)(long)(int)v;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Slt(ulong a, ulong b) => (long)a < (long)b ? 1UL : 0UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Sltu(ulong a, ulong b) => a < b ? 1UL : 0UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Sra(ulong a, int shamt) => (ulong)((long)a >> (shamt & 63));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Sllw(ulong a, int shamt) => SextW((uint)a << (shamt & 31));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Srlw(ulong a, int shamt) => SextW((uint)a >> (shamt & 31));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Sraw(ulong a, int shamt) => (ulong)(long)((int)a >> (shamt & 31));
}

/// <summary>M: multiply and divide, with the spec's results for division by zero and overflow.</summary>
internal static class Rv64M
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mulh(ulong a, ulong b) => (ulong)Math.BigMul((long)a, (long)b, out _);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mulhu(ulong a, ulong b) => Math.BigMul(a, b, out _);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mulhsu(ulong a, ulong b)
    {
        ulong high = Math.BigMul(a, b, out _);
        return (long)a < 0 ? high - b : high;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Div(ulong a, ulong b)
    {
        if (b == 0)
        {
            return ulong.MaxValue;
        }

        if ((long)a == long.MinValue && (long)b == -1)
        {
            return a;
        }

        return (ulong)((long)a / (long)b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Divu(ulong a, ulong b) => b == 0 ? ulong.MaxValue : a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Rem(ulong a, ulong b)
    {
        if (b == 0)
        {
            return a;
        }

        if ((long)a == long.MinValue && (long)b == -1)
        {
            return 0;
        }

        return (ulong)((long)a % (long)b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Remu(ulong a, ulong b) => b == 0 ? a : a % b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Divw(ulong a, ulong b)
    {
        int x = (int)a, y = (int)b;
        if (y == 0)
        {
            return ulong.MaxValue;
        }

        if (x == int.MinValue && y == -1)
        {
            return (ulong)(long)x;
        }

        return (ulong)(long)(x / y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Divuw(ulong a, ulong b)
    {
        uint x = (uint)a, y = (uint)b;
        return y == 0 ? ulong.MaxValue : Rv64I.SextW(x / y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Remw(ulong a, ulong b)
    {
        int x = (int)a, y = (int)b;
        if (y == 0)
        {
            return (ulong)(long)x;
        }

        if (x == int.MinValue && y == -1)
        {
            return 0;
        }

        return (ulong)(long)(x % y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Remuw(ulong a, ulong b)
    {
        uint x = (uint)a, y = (uint)b;
        return y == 0 ? Rv64I.SextW(x) : Rv64I.SextW(x % y);
    }
}

/// <summary>A: the read-modify-write function of each AMO (the memory access is the hart's).</summary>
internal static class Rv64A
{
    public static ulong Apply(Op op, ulong old, ulong operand) => op switch
    {
        Op.AmoswapW or Op.AmoswapD => operand,
        Op.AmoaddW or Op.AmoaddD => old + operand,
        Op.AmoxorW or Op.AmoxorD => old ^ operand,
        Op.AmoandW or Op.AmoandD => old & operand,
        Op.AmoorW or Op.AmoorD => old | operand,
        Op.AmominW => (int)old < (int)operand ? old : operand,
        Op.AmomaxW => (int)old > (int)operand ? old : operand,
        Op.AmominuW => (uint)old < (uint)operand ? old : operand,
        Op.AmomaxuW => (uint)old > (uint)operand ? old : operand,
        Op.AmominD => (long)old < (long)operand ? old : operand,
        Op.AmomaxD => (long)old > (long)operand ? old : operand,
        Op.AmominuD => old < operand ? old : operand,
        Op.AmomaxuD => old > operand ? old : operand,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "not an AMO"),
    };

    public static bool IsWord(Op op) => op is >= Op.LrW and <= Op.AmomaxuW;
}
