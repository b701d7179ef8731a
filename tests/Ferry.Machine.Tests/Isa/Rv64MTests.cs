using System.Numerics;
using CsCheck;
using Ferry.Machine.Tests.Support;
using static Ferry.Machine.Tests.Support.Operands;

namespace Ferry.Machine.Tests.Isa;

public sealed class Rv64MTests : IDisposable
{
    private readonly InsnBench _bench = new();

    public void Dispose() => _bench.Dispose();

    // Reference semantics from the ISA manual (M extension, table 7.1), computed with BigInteger.
    private static ulong Low64(BigInteger v) => (ulong)(v & ulong.MaxValue);

    private static BigInteger Signed(ulong v) => (long)v;

    private static ulong RefDiv(ulong a, ulong b) => b == 0 ? ulong.MaxValue
        : (long)a == long.MinValue && (long)b == -1 ? a
        : Low64(BigInteger.Divide(Signed(a), Signed(b)));

    private static ulong RefRem(ulong a, ulong b) => b == 0 ? a
        : (long)a == long.MinValue && (long)b == -1 ? 0
        : Low64(BigInteger.Remainder(Signed(a), Signed(b)));

    private static ulong RefDivw(ulong a, ulong b)
    {
        int x = (int)a, y = (int)b;
        return y == 0 ? ulong.MaxValue : x == int.MinValue && y == -1 ? (ulong)(long)x : (ulong)(long)(int)(long)BigInteger.Divide(x, y);
    }

    private static ulong RefRemw(ulong a, ulong b)
    {
        int x = (int)a, y = (int)b;
        return y == 0 ? (ulong)(long)x : x == int.MinValue && y == -1 ? 0 : (ulong)(long)(int)(long)BigInteger.Remainder(x, y);
    }

    private static readonly (string Name, Func<int, int, int, uint> Encode, Func<ulong, ulong, ulong> Reference)[] Ops =
    [
        ("mul", Asm.Mul, (a, b) => Low64((BigInteger)a * b)),
        ("mulh", Asm.Mulh, (a, b) => Low64((Signed(a) * Signed(b)) >> 64)),
        ("mulhsu", Asm.Mulhsu, (a, b) => Low64((Signed(a) * b) >> 64)),
        ("mulhu", Asm.Mulhu, (a, b) => Low64(((BigInteger)a * b) >> 64)),
        ("div", Asm.Div, RefDiv),
        ("divu", Asm.Divu, (a, b) => b == 0 ? ulong.MaxValue : a / b),
        ("rem", Asm.Rem, RefRem),
        ("remu", Asm.Remu, (a, b) => b == 0 ? a : a % b),
        ("mulw", Asm.Mulw, (a, b) => SextW((uint)Low64((BigInteger)a * b))),
        ("divw", Asm.Divw, RefDivw),
        ("divuw", Asm.Divuw, (a, b) => (uint)b == 0 ? ulong.MaxValue : SextW((uint)a / (uint)b)),
        ("remw", Asm.Remw, RefRemw),
        ("remuw", Asm.Remuw, (a, b) => (uint)b == 0 ? SextW((uint)a) : SextW((uint)a % (uint)b)),
    ];

    [Fact]
    public void AllOps_MatchBigIntegerReference()
    {
        Gen<ulong> divisor = Gen.Frequency((6, (IGen<ulong>)Value), (1, Gen.OneOf(0UL, ulong.MaxValue, 0xFFFF_FFFFUL, 0x1_0000_0000UL)));
        Gen.Select(Gen.Int[0, Ops.Length - 1], Value, divisor).Sample((i, a, b) =>
        {
            var (name, encode, reference) = Ops[i];
            ulong expected = reference(a, b);
            ulong actual = _bench.Exec(encode(R.A0, R.A1, R.A2), a, b);
            Assert.True(expected == actual, $"{name} 0x{a:x}, 0x{b:x}: 0x{actual:x}, expected 0x{expected:x}");
        }, iter: 6000, threads: 1);
    }

    [Theory]
    [InlineData("div", 7UL, 0UL, ulong.MaxValue)]
    [InlineData("divu", 7UL, 0UL, ulong.MaxValue)]
    [InlineData("rem", 7UL, 0UL, 7UL)]
    [InlineData("remu", 7UL, 0UL, 7UL)]
    [InlineData("div", 0x8000_0000_0000_0000UL, ulong.MaxValue, 0x8000_0000_0000_0000UL)] // overflow
    [InlineData("rem", 0x8000_0000_0000_0000UL, ulong.MaxValue, 0UL)]
    [InlineData("divw", 0xFFFF_FFFF_8000_0000UL, 0x0000_0000_FFFF_FFFFUL, 0xFFFF_FFFF_8000_0000UL)] // 32-bit overflow
    [InlineData("remw", 0x8000_0000UL, 0xFFFF_FFFFUL, 0UL)]
    [InlineData("divw", 0x1234_0000_0000_0005UL, 0xFFFF_FFFF_0000_0000UL, ulong.MaxValue)] // divisor's low word is 0
    [InlineData("remw", 0x1234_0000_8000_0005UL, 0UL, 0xFFFF_FFFF_8000_0005UL)] // remainder = sext(dividend word)
    [InlineData("divuw", 0xFFFF_FFFFUL, 1UL, ulong.MaxValue)] // 0xFFFFFFFF sign-extended
    [InlineData("remuw", 0x8000_0001UL, 0UL, 0xFFFF_FFFF_8000_0001UL)]
    [InlineData("div", 0xFFFF_FFFF_FFFF_FFF9UL, 2UL, 0xFFFF_FFFF_FFFF_FFFDUL)] // -7 / 2 = -3 (towards zero)
    [InlineData("rem", 0xFFFF_FFFF_FFFF_FFF9UL, 2UL, ulong.MaxValue)] // -7 % 2 = -1 (sign of dividend)
    [InlineData("mulh", ulong.MaxValue, ulong.MaxValue, 0UL)] // -1 * -1 = 1
    [InlineData("mulhu", ulong.MaxValue, ulong.MaxValue, 0xFFFF_FFFF_FFFF_FFFEUL)]
    [InlineData("mulhsu", ulong.MaxValue, ulong.MaxValue, ulong.MaxValue)] // -1 * (2^64-1)
    [InlineData("mulhsu", 2UL, ulong.MaxValue, 1UL)]
    [InlineData("mulh", 0x8000_0000_0000_0000UL, 0x8000_0000_0000_0000UL, 0x4000_0000_0000_0000UL)]
    [InlineData("mulw", 0x0000_0000_7FFF_FFFFUL, 2UL, 0xFFFF_FFFF_FFFF_FFFEUL)]
    public void EdgeCases(string op, ulong a, ulong b, ulong expected)
    {
        var (_, encode, _) = Ops.Single(o => o.Name == op);
        Assert.Equal(expected, _bench.Exec(encode(R.A0, R.A1, R.A2), a, b));
    }
}
