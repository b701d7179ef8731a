using CsCheck;

namespace Ferry.Machine.Tests.Support;

/// <summary>Generators of register values and immediates, biased towards the edges where bugs live.</summary>
internal static class Operands
{
    public static readonly ulong[] Edges =
    [
        0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue - 1, 0xFFFF_FFFF_8000_0000,
        0xFFFF_FFFF_7FFF_FFFF, 0x0000_0001_8000_0000, 63, 64, 31, 32,
    ];

    public static readonly Gen<ulong> Value = Gen.Frequency(
        (4, (IGen<ulong>)Gen.ULong),
        (2, Gen.OneOf(Edges)),
        (1, Gen.Int.Select(i => (ulong)(long)i)),
        (1, Gen.Int[-64, 64].Select(i => (ulong)(long)i)));

    public static readonly Gen<int> Imm12 = Gen.Frequency(
        (3, (IGen<int>)Gen.Int[-2048, 2047]),
        (1, Gen.OneOf(0, 1, -1, 2047, -2048, 0x7FF, 0x400)));

    public static ulong SextW(ulong v) => (ulong)(long)(int)v;
}
