using CsCheck;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.State;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Isa;

/// <summary>
/// The soft-float against .NET where .NET is exact (round to nearest even results), the host
/// fast paths against the soft-float (results and flags), and the FP state around the hart:
/// FS, NaN-boxing, FP loads/stores and their page facts, the state codec and digest. The
/// arithmetic in every rounding mode, flags included, is checked against QEMU by the
/// rv64fd-ops ISA test.
/// </summary>
public sealed class FloatTests : IDisposable
{
    private readonly InsnBench _bench = new();

    public void Dispose() => _bench.Dispose();

    private static readonly FloatFormat D = SoftFloat.D;
    private static readonly FloatFormat S = SoftFloat.S;

    // ---- operands: full-range bits, near 1, subnormal/tiny, near overflow, and the specials

    private static readonly ulong[] DoubleEdges =
    [
        0, 0x8000_0000_0000_0000, 1, 0x000F_FFFF_FFFF_FFFF, 0x0010_0000_0000_0000, 0x3FF0_0000_0000_0000,
        0xBFF0_0000_0000_0000, 0x7FEF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000,
        0x7FF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0x3CA0_0000_0000_0000, 0x0000_0000_0000_0003,
    ];

    private static readonly uint[] SingleEdges =
    [
        0, 0x8000_0000, 1, 0x007F_FFFF, 0x0080_0000, 0x3F80_0000, 0xBF80_0000, 0x7F7F_FFFF, 0x7F80_0000,
        0xFF80_0000, 0x7FC0_0000, 0x7F80_0001, 0x3380_0000, 3,
    ];

    private static readonly Gen<ulong> DoubleBits = Gen.Frequency(
        (3, (IGen<ulong>)Gen.ULong),
        (3, Gen.Select(Gen.Bool, Gen.Int[1023 - 8, 1023 + 8], Gen.ULong).Select((s, e, m) => Compose(s, e, m))),
        (2, Gen.Select(Gen.Bool, Gen.Int[0, 60], Gen.ULong).Select((s, e, m) => Compose(s, e, m))),
        (1, Gen.Select(Gen.Bool, Gen.Int[2040, 2046], Gen.ULong).Select((s, e, m) => Compose(s, e, m))),
        (1, Gen.OneOf(DoubleEdges)));

    private static readonly Gen<uint> SingleBits = Gen.Frequency(
        (3, (IGen<uint>)Gen.UInt),
        (3, Gen.Select(Gen.Bool, Gen.Int[127 - 8, 127 + 8], Gen.UInt).Select((s, e, m) => ComposeS(s, e, m))),
        (2, Gen.Select(Gen.Bool, Gen.Int[0, 30], Gen.UInt).Select((s, e, m) => ComposeS(s, e, m))),
        (1, Gen.Select(Gen.Bool, Gen.Int[248, 254], Gen.UInt).Select((s, e, m) => ComposeS(s, e, m))),
        (1, Gen.OneOf(SingleEdges)));

    private static ulong Compose(bool sign, int exp, ulong mantissa)
        => (sign ? 1UL << 63 : 0) | ((ulong)exp << 52) | (mantissa & 0x000F_FFFF_FFFF_FFFF);

    private static uint ComposeS(bool sign, int exp, uint mantissa)
        => (sign ? 1U << 31 : 0) | ((uint)exp << 23) | (mantissa & 0x007F_FFFF);

    private static double Dbl(ulong bits) => BitConverter.UInt64BitsToDouble(bits);

    private static float Sgl(uint bits) => BitConverter.Int32BitsToSingle((int)bits);

    /// <summary>.NET's result in RISC-V terms: every NaN is the canonical one.</summary>
    private static ulong Expect(double r) => double.IsNaN(r) ? D.DefaultNaN : BitConverter.DoubleToUInt64Bits(r);

    private static ulong ExpectS(float r) => float.IsNaN(r) ? S.DefaultNaN : (uint)BitConverter.SingleToInt32Bits(r);

    // ---- soft-float against .NET (RNE)

    [Fact]
    public void DoubleArithmetic_RoundToNearestEven_EqualsDotNet()
    {
        Gen.Select(DoubleBits, DoubleBits, DoubleBits).Sample((a, b, c) =>
        {
            uint fl = 0;
            double x = Dbl(a), y = Dbl(b), z = Dbl(c);
            Assert.Equal(Expect(x + y), SoftFloat.Add(a, b, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect(x - y), SoftFloat.Sub(a, b, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect(x * y), SoftFloat.Mul(a, b, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect(x / y), SoftFloat.Div(a, b, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect(Math.Sqrt(x)), SoftFloat.Sqrt(a, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect(Math.FusedMultiplyAdd(x, y, z)), SoftFloat.MulAdd(a, b, c, false, false, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect(Math.FusedMultiplyAdd(x, y, -z)), SoftFloat.MulAdd(a, b, c, false, true, D, SoftFloat.Rne, ref fl));
        }, iter: 20_000);
    }

    [Fact]
    public void SingleArithmetic_RoundToNearestEven_EqualsDotNet()
    {
        Gen.Select(SingleBits, SingleBits, SingleBits).Sample((a, b, c) =>
        {
            uint fl = 0;
            float x = Sgl(a), y = Sgl(b), z = Sgl(c);
            Assert.Equal(ExpectS(x + y), SoftFloat.Add(a, b, S, SoftFloat.Rne, ref fl));
            Assert.Equal(ExpectS(x * y), SoftFloat.Mul(a, b, S, SoftFloat.Rne, ref fl));
            Assert.Equal(ExpectS(x / y), SoftFloat.Div(a, b, S, SoftFloat.Rne, ref fl));
            Assert.Equal(ExpectS(MathF.Sqrt(x)), SoftFloat.Sqrt(a, S, SoftFloat.Rne, ref fl));
            Assert.Equal(ExpectS(MathF.FusedMultiplyAdd(x, y, z)), SoftFloat.MulAdd(a, b, c, false, false, S, SoftFloat.Rne, ref fl));
        }, iter: 20_000);
    }

    [Fact]
    public void Conversions_RoundToNearestEven_EqualDotNet()
    {
        Gen.Select(DoubleBits, Operands.Value).Sample((a, i) =>
        {
            uint fl = 0;
            Assert.Equal(ExpectS((float)Dbl(a)), SoftFloat.Convert(a, D, S, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect((double)(long)i), SoftFloat.FromInt(i, word: false, unsigned: false, D, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect((double)i), SoftFloat.FromInt(i, word: false, unsigned: true, D, SoftFloat.Rne, ref fl));
            Assert.Equal(ExpectS((float)(long)i), SoftFloat.FromInt(i, word: false, unsigned: false, S, SoftFloat.Rne, ref fl));
            Assert.Equal(Expect((double)(int)i), SoftFloat.FromInt(i, word: true, unsigned: false, D, SoftFloat.Rne, ref fl));

            // Truncation of an in-range value is .NET's cast.
            double x = Dbl(a);
            if (double.IsFinite(x) && Math.Abs(x) < 9.2e18)
            {
                Assert.Equal((ulong)(long)x, SoftFloat.ToInt(a, D, word: false, unsigned: false, SoftFloat.Rtz, ref fl));
                Assert.Equal((ulong)(long)Math.Round(x, MidpointRounding.ToEven), SoftFloat.ToInt(a, D, word: false, unsigned: false, SoftFloat.Rne, ref fl));
                Assert.Equal((ulong)(long)Math.Floor(x), SoftFloat.ToInt(a, D, word: false, unsigned: false, SoftFloat.Rdn, ref fl));
                Assert.Equal((ulong)(long)Math.Ceiling(x), SoftFloat.ToInt(a, D, word: false, unsigned: false, SoftFloat.Rup, ref fl));
                Assert.Equal((ulong)(long)Math.Round(x, MidpointRounding.AwayFromZero), SoftFloat.ToInt(a, D, word: false, unsigned: false, SoftFloat.Rmm, ref fl));
            }
        }, iter: 20_000);
    }

    // ---- the host fast paths against the soft-float: same bits, same flags

    [Fact]
    public void DoubleFastPaths_EqualSoftFloat_ResultsAndFlags()
    {
        Gen.Select(DoubleBits, DoubleBits).Sample((a, b) =>
        {
            CheckFast(SoftFloat.TryAddDRne(a, b, false, out ulong r, ref Fast), r, SoftFloat.Add(a, b, D, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryAddDRne(a, b, true, out r, ref Fast), r, SoftFloat.Sub(a, b, D, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryMulDRne(a, b, out r, ref Fast), r, SoftFloat.Mul(a, b, D, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryDivDRne(a, b, out r, ref Fast), r, SoftFloat.Div(a, b, D, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TrySqrtDRne(a, out r, ref Fast), r, SoftFloat.Sqrt(a, D, SoftFloat.Rne, ref Soft));
        }, iter: 50_000, threads: 1);
    }

    [Fact]
    public void FusedMultiplyAddFastPaths_EqualSoftFloat_ResultsAndFlags()
    {
        // Addends near -a·b as well as independent ones: cancellation is where exactness is subtle.
        Gen.Select(DoubleBits, DoubleBits, DoubleBits, Gen.Int[0, 3], Gen.Int[0, 2]).Sample((a, b, c, neg, mode) =>
        {
            bool np = (neg & 1) != 0, nc = (neg & 2) != 0;
            if (mode == 1)
            {
                double prod = Dbl(a) * Dbl(b);
                c = BitConverter.DoubleToUInt64Bits(np != nc ? prod : -prod);
            }
            else if (mode == 2)
            {
                c = (BitConverter.DoubleToUInt64Bits(Dbl(a) * Dbl(b)) ^ (np != nc ? 0 : 1UL << 63)) + (c & 7) - 3;
            }

            CheckFast(SoftFloat.TryMulAddDRne(a, b, c, np, nc, out ulong r, ref Fast), r, SoftFloat.MulAdd(a, b, c, np, nc, D, SoftFloat.Rne, ref Soft));
        }, iter: 100_000, threads: 1);

        Gen.Select(SingleBits, SingleBits, SingleBits, Gen.Int[0, 3], Gen.Bool).Sample((a, b, c, neg, near) =>
        {
            bool np = (neg & 1) != 0, nc = (neg & 2) != 0;
            if (near)
            {
                float prod = Sgl(a) * Sgl(b);
                c = (uint)BitConverter.SingleToInt32Bits(np != nc ? prod : -prod) + (c & 7) - 3;
            }

            CheckFast(SoftFloat.TryMulAddSRne(a, b, c, np, nc, out ulong r, ref Fast), r, SoftFloat.MulAdd(a, b, c, np, nc, S, SoftFloat.Rne, ref Soft));
        }, iter: 100_000, threads: 1);
    }

    [Fact]
    public void FusedMultiplyAddFastPath_TakesTheCommonCase_AndSeesInexactness()
    {
        uint fl = 0;
        ulong one = 0x3FF0_0000_0000_0000, third = BitConverter.DoubleToUInt64Bits(1.0 / 3);
        Assert.True(SoftFloat.TryMulAddDRne(one, one, one, false, false, out ulong r, ref fl));
        Assert.Equal(BitConverter.DoubleToUInt64Bits(2.0), r);
        Assert.Equal(0U, fl);

        // 3 × fl(1/3) - 1 is exactly -2^-54: exact (no NX), and far from what a rounded product would give.
        Assert.True(SoftFloat.TryMulAddDRne(BitConverter.DoubleToUInt64Bits(3.0), third, one, false, true, out r, ref fl));
        Assert.Equal(BitConverter.DoubleToUInt64Bits(-Math.Pow(2, -54)), r);
        Assert.Equal(0U, fl);

        Assert.True(SoftFloat.TryMulAddDRne(third, third, one, false, false, out _, ref fl));
        Assert.Equal(SoftFloat.NX, fl);
    }

    [Fact]
    public void SingleFastPaths_EqualSoftFloat_ResultsAndFlags()
    {
        Gen.Select(SingleBits, SingleBits).Sample((a, b) =>
        {
            CheckFast(SoftFloat.TryArithSRne(0, a, b, out ulong r, ref Fast), r, SoftFloat.Add(a, b, S, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryArithSRne(1, a, b, out r, ref Fast), r, SoftFloat.Sub(a, b, S, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryArithSRne(2, a, b, out r, ref Fast), r, SoftFloat.Mul(a, b, S, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryArithSRne(3, a, b, out r, ref Fast), r, SoftFloat.Div(a, b, S, SoftFloat.Rne, ref Soft));
            CheckFast(SoftFloat.TryArithSRne(4, a, b, out r, ref Fast), r, SoftFloat.Sqrt(a, S, SoftFloat.Rne, ref Soft));
        }, iter: 50_000, threads: 1);
    }

    [ThreadStatic]
    private static uint Fast;

    [ThreadStatic]
    private static uint Soft;

    private static void CheckFast(bool taken, ulong fast, ulong soft)
    {
        if (taken)
        {
            Assert.Equal(soft, fast);
            Assert.Equal(Soft, Fast);
        }

        Fast = Soft = 0;
    }

    [Fact]
    public void FastPaths_TakeTheCommonCase()
    {
        uint fl = 0;
        Assert.True(SoftFloat.TryAddDRne(0x3FF0_0000_0000_0000, 0x4000_0000_0000_0000, false, out ulong r, ref fl));
        Assert.Equal(BitConverter.DoubleToUInt64Bits(3.0), r);
        Assert.Equal(0U, fl);
        Assert.True(SoftFloat.TryDivDRne(0x3FF0_0000_0000_0000, BitConverter.DoubleToUInt64Bits(3.0), out _, ref fl));
        Assert.Equal(SoftFloat.NX, fl);
    }

    // ---- flags and directed rounding on known cases

    [Theory]
    [InlineData(SoftFloat.Rne, 0x3FD5_5555_5555_5555UL)]
    [InlineData(SoftFloat.Rtz, 0x3FD5_5555_5555_5555UL)]
    [InlineData(SoftFloat.Rdn, 0x3FD5_5555_5555_5555UL)]
    [InlineData(SoftFloat.Rup, 0x3FD5_5555_5555_5556UL)]
    [InlineData(SoftFloat.Rmm, 0x3FD5_5555_5555_5555UL)]
    public void OneThird_RoundsPerMode(int rm, ulong expected)
    {
        uint fl = 0;
        Assert.Equal(expected, SoftFloat.Div(0x3FF0_0000_0000_0000, 0x4008_0000_0000_0000, D, rm, ref fl));
        Assert.Equal(SoftFloat.NX, fl);
    }

    [Fact]
    public void Overflow_Underflow_Invalid_DivideByZero()
    {
        uint fl = 0;
        Assert.Equal(D.Inf, SoftFloat.Mul(0x7FEF_FFFF_FFFF_FFFF, 0x4000_0000_0000_0000, D, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.OF | SoftFloat.NX, fl);
        fl = 0;
        Assert.Equal(0x7FEF_FFFF_FFFF_FFFFUL, SoftFloat.Mul(0x7FEF_FFFF_FFFF_FFFF, 0x4000_0000_0000_0000, D, SoftFloat.Rtz, ref fl));
        Assert.Equal(SoftFloat.OF | SoftFloat.NX, fl);
        fl = 0;
        Assert.Equal(0UL, SoftFloat.Mul(1, 0x3FE0_0000_0000_0000, D, SoftFloat.Rne, ref fl)); // min subnormal / 2: tie to even 0
        Assert.Equal(SoftFloat.UF | SoftFloat.NX, fl);
        fl = 0;
        Assert.Equal(1UL, SoftFloat.Mul(1, 0x3FE0_0000_0000_0000, D, SoftFloat.Rup, ref fl));
        Assert.Equal(SoftFloat.UF | SoftFloat.NX, fl);
        fl = 0;
        Assert.Equal(D.DefaultNaN, SoftFloat.Sub(D.Inf, D.Inf, D, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.NV, fl);
        fl = 0;
        Assert.Equal(D.Inf | D.SignBit, SoftFloat.Div(0xBFF0_0000_0000_0000, 0, D, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.DZ, fl);
        fl = 0;
        // inf × 0 + qNaN is invalid (the spec requires it)
        Assert.Equal(D.DefaultNaN, SoftFloat.MulAdd(D.Inf, 0, D.DefaultNaN, false, false, D, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.NV, fl);
        fl = 0;
        // x - x is +0, except -0 when rounding down
        Assert.Equal(0UL, SoftFloat.Sub(0x3FF0_0000_0000_0000, 0x3FF0_0000_0000_0000, D, SoftFloat.Rne, ref fl));
        Assert.Equal(D.SignBit, SoftFloat.Sub(0x3FF0_0000_0000_0000, 0x3FF0_0000_0000_0000, D, SoftFloat.Rdn, ref fl));
        Assert.Equal(0U, fl);
    }

    [Fact]
    public void FloatToInt_SaturatesWithInvalidOnly()
    {
        uint fl = 0;
        Assert.Equal((ulong)long.MaxValue, SoftFloat.ToInt(D.DefaultNaN, D, false, false, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.NV, fl);
        fl = 0;
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, SoftFloat.ToInt(D.Inf, D, word: true, unsigned: true, SoftFloat.Rne, ref fl)); // sign-extended 2^32-1
        Assert.Equal(SoftFloat.NV, fl);
        fl = 0;
        Assert.Equal(0UL, SoftFloat.ToInt(BitConverter.DoubleToUInt64Bits(-1.5), D, false, unsigned: true, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.NV, fl);
        fl = 0;
        Assert.Equal(0UL, SoftFloat.ToInt(BitConverter.DoubleToUInt64Bits(-0.25), D, false, unsigned: true, SoftFloat.Rne, ref fl));
        Assert.Equal(SoftFloat.NX, fl);
        fl = 0;
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, SoftFloat.ToInt(BitConverter.DoubleToUInt64Bits(-2147483648.75), D, word: true, unsigned: false, SoftFloat.Rtz, ref fl));
        Assert.Equal(SoftFloat.NX, fl);
    }

    // ---- the hart: FS, NaN-boxing, loads and stores, state

    private static uint FpR(int funct7, int rm, int rd, int rs1, int rs2) => Asm.RType(0x53, rm, (uint)funct7, rd, rs1, rs2);

    private const int FA0 = 10, FA1 = 11, FA2 = 12;

    private void EnableFp(ulong fs = 1)
    {
        Rig rig = _bench.Rig;
        rig.SetCsr(Csr.Mstatus, (rig.Csr(Csr.Mstatus) & ~MstatusBits.FS) | (fs << 13));
    }

    [Fact]
    public void FsOff_MakesFpIllegal_WithTheInstructionInMtval()
    {
        uint fadd = FpR(0x01, 0, FA0, FA1, FA2);
        var (cause, tval, _) = _bench.Trap(fadd);
        Assert.Equal(2UL, cause);
        Assert.Equal(fadd, tval);
        var (cause2, tval2, _) = _bench.Trap(0x2188, 2); // c.fld fa0, 0(a1)
        Assert.Equal(2UL, cause2);
        Assert.Equal(0x2188UL, tval2);
        Assert.False(_bench.Rig.Hart.TryReadCsr(Csr.Fcsr, out _));
    }

    [Fact]
    public void FpRegisterWrite_MakesFsDirty_AndSdFollows()
    {
        EnableFp(fs: 2); // Clean
        Rig rig = _bench.Rig;
        Assert.Equal(0UL, rig.Csr(Csr.Mstatus) >> 63);
        rig.SetX(R.A1, 0x4000_0000_0000_0000);
        _bench.Step(FpR(0x79, 0, FA0, R.A1, 0)); // fmv.d.x fa0, a1
        Assert.Equal(MstatusBits.FS, rig.Csr(Csr.Mstatus) & MstatusBits.FS);
        Assert.Equal(1UL, rig.Csr(Csr.Mstatus) >> 63);
        Assert.Equal(1UL, rig.Csr(Csr.Sstatus) >> 63);
        Assert.Equal(0x4000_0000_0000_0000UL, rig.Hart.GetFRegister(FA0));
    }

    [Fact]
    public void SingleOperand_NotNaNBoxed_IsTheCanonicalNaN()
    {
        EnableFp();
        Rig rig = _bench.Rig;
        rig.Hart.SetFRegister(FA1, 0x0000_0000_3F80_0000); // 1.0f, not boxed
        rig.Hart.SetFRegister(FA2, 0xFFFF_FFFF_3F80_0000); // 1.0f, boxed
        _bench.Step(FpR(0x00, 0, FA0, FA1, FA2)); // fadd.s
        Assert.Equal(0xFFFF_FFFF_7FC0_0000UL, rig.Hart.GetFRegister(FA0));
        _bench.Step(FpR(0x00, 0, FA0, FA2, FA2));
        Assert.Equal(0xFFFF_FFFF_4000_0000UL, rig.Hart.GetFRegister(FA0));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(6)]
    public void ReservedStaticRoundingMode_IsIllegal(int rm)
    {
        EnableFp();
        uint insn = FpR(0x01, rm, FA0, FA1, FA2);
        var (cause, tval, _) = _bench.Trap(insn);
        Assert.Equal(2UL, cause);
        Assert.Equal(insn, tval);
    }

    [Fact]
    public void DynamicRoundingMode_WithReservedFrm_IsIllegal()
    {
        EnableFp();
        _bench.Rig.SetCsr(Csr.Frm, 5);
        var (cause, _, _) = _bench.Trap(FpR(0x01, 7, FA0, FA1, FA2));
        Assert.Equal(2UL, cause);
        _bench.Rig.SetCsr(Csr.Frm, 0);
        _bench.Step(FpR(0x01, 7, FA0, FA1, FA2));
    }

    [Fact]
    public void FpStore_GoesThroughThePageFacts()
    {
        EnableFp();
        Rig rig = _bench.Rig;
        ulong addr = Rig.Data + 0x2000;
        int page = Rig.PageOf(addr);
        rig.Memory.CollectDirtyLog(new Ferry.Machine.Memory.PageBitmap(rig.Memory.PageCount));
        Assert.False(rig.Memory.Dirty.Get(page));
        rig.Hart.SetFRegister(FA2, 0x1122_3344_5566_7788);
        rig.SetX(R.A1, addr);
        _bench.Step(Asm.SType(0x27, 3, R.A1, FA2, 8)); // fsd fa2, 8(a1)
        Assert.True(rig.Memory.Dirty.Get(page));
        Assert.Equal(0x1122_3344_5566_7788UL, rig.ReadU64(addr + 8));
        _bench.Step(Asm.IType(0x07, 2, FA0, R.A1, 8)); // flw fa0, 8(a1): boxed
        Assert.Equal(0xFFFF_FFFF_5566_7788UL, rig.Hart.GetFRegister(FA0));
    }

    [Fact]
    public void FpLoop_AllocatesNothing()
    {
        // A loop over every kind of FP path: RNE fast path, directed rounding, fused multiply-add,
        // conversions, compares, flags, FP loads and stores.
        EnableFp();
        Rig rig = _bench.Rig;
        var p = Rig.NewProgram();
        p.Li(R.A1, Rig.Data).Li(R.A2, 0x3FF8_0000_0000_0000).Emit(FpR(0x79, 0, FA1, R.A2, 0)); // fa1 = 1.5
        var loop = p.Mark();
        p.Emit(
            FpR(0x01, 0, FA0, FA1, FA1),            // fadd.d rne
            FpR(0x09, 2, FA0, FA0, FA1),            // fmul.d rdn
            FpR(0x0D, 7, FA2, FA0, FA1),            // fdiv.d dyn
            FpR(0x00, 3, FA2, FA2, FA1),            // fadd.s rup (unboxed operand)
            Asm.RType(0x43, 0, (uint)((FA1 << 2) | 1), FA0, FA0, FA1), // fmadd.d fa0, fa0, fa1, fa1
            FpR(0x61, 1, R.A3, FA0, 0),             // fcvt.w.d rtz
            FpR(0x51, 1, R.A4, FA0, FA1),           // flt.d
            Asm.SType(0x27, 3, R.A1, FA0, 0),       // fsd
            Asm.IType(0x07, 3, FA0, R.A1, 0));      // fld
        p.J(loop);
        rig.Load(p);
        rig.Step(10_000);

        // The runtime may allocate on this thread once while it tiers the loop up (on-stack
        // replacement), so the check is that some round of 100,000 instructions allocates nothing.
        var rounds = new List<long>();
        for (int round = 0; round < 5; round++)
        {
            ulong target = rig.Hart.InstructionsRetired + 100_000;
            long before = GC.GetAllocatedBytesForCurrentThread();
            rig.Machine.Run(target);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(target, rig.Hart.InstructionsRetired);
            Assert.Equal(0UL, rig.State.Mcause); // no trap on the way
            rounds.Add(allocated);
            if (allocated == 0)
            {
                return;
            }
        }

        Assert.Fail($"every round allocated: {string.Join(", ", rounds)} bytes");
    }

    [Fact]
    public void FpState_TravelsInTheStateCodec_AndTheDigest()
    {
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("hello"), memory: 4UL << 20);
        string before = StateDigest.Compute(m);
        Assert.True(m.Hart.TryWriteCsr(Csr.Mstatus, m.Hart.Mstatus | (1UL << 13)));
        for (int i = 0; i < 32; i++)
        {
            m.Hart.SetFRegister(i, 0x0101_0101_0101_0101UL * (ulong)(i + 1));
        }

        Assert.True(m.Hart.TryWriteCsr(Csr.Fcsr, 0x8B));
        string after = StateDigest.Compute(m);
        Assert.NotEqual(before, after);

        MachineState saved = m.SaveState();
        MachineState decoded = StateCodec.Decode(StateCodec.Encode(saved));
        Assert.Equal(saved.Hart.F, decoded.Hart.F);
        Assert.Equal(0x8BU, decoded.Hart.Fcsr);

        using var copy = new VirtMachine(saved.Config);
        copy.RestoreState(decoded);
        Assert.Equal(0x0505_0505_0505_0505UL, copy.Hart.GetFRegister(4));
        Assert.Equal(0x8BU, copy.Hart.Fcsr);

        // A state without the FP registers (version 1) is refused, as is an fcsr above 8 bits.
        byte[] encoded = StateCodec.Encode(saved);
        byte[] v1 = (byte[])encoded.Clone();
        v1[0] = 1;
        Assert.Throws<InvalidDataException>(() => StateCodec.Decode(v1));
        byte[] wide = StateCodec.Encode(saved with { Hart = saved.Hart with { Fcsr = 0x100 } });
        Assert.Contains("fcsr", Assert.Throws<InvalidDataException>(() => StateCodec.Decode(wide)).Message, StringComparison.Ordinal);
    }
}
