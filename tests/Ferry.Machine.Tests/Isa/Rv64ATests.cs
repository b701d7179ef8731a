using CsCheck;
using Ferry.Machine.Tests.Support;
using static Ferry.Machine.Tests.Support.Operands;

namespace Ferry.Machine.Tests.Isa;

public sealed class Rv64ATests : IDisposable
{
    private readonly InsnBench _bench = new();
    private const ulong Cell = Rig.Data + 0x40;

    public void Dispose() => _bench.Dispose();

    private static readonly (string Name, int Funct5, Func<ulong, ulong, bool, ulong> Apply)[] Amos =
    [
        ("amoswap", Asm.AmoSwap, (_, b, _) => b),
        ("amoadd", Asm.AmoAdd, (a, b, _) => a + b),
        ("amoxor", Asm.AmoXor, (a, b, _) => a ^ b),
        ("amoand", Asm.AmoAnd, (a, b, _) => a & b),
        ("amoor", Asm.AmoOr, (a, b, _) => a | b),
        ("amomin", Asm.AmoMin, (a, b, w) => w ? (ulong)Math.Min((int)a, (int)b) : (ulong)Math.Min((long)a, (long)b)),
        ("amomax", Asm.AmoMax, (a, b, w) => w ? (ulong)Math.Max((int)a, (int)b) : (ulong)Math.Max((long)a, (long)b)),
        ("amominu", Asm.AmoMinu, (a, b, w) => w ? Math.Min((uint)a, (uint)b) : Math.Min(a, b)),
        ("amomaxu", Asm.AmoMaxu, (a, b, w) => w ? Math.Max((uint)a, (uint)b) : Math.Max(a, b)),
    ];

    [Fact]
    public void Amos_ReturnOldValueAndStoreResult()
    {
        Gen.Select(Gen.Int[0, Amos.Length - 1], Gen.Bool, Value, Value).Sample((i, dword, old, operand) =>
        {
            var (name, funct5, apply) = Amos[i];
            const ulong Guard = 0x5A5A_5A5A_5A5A_5A5A;
            _bench.Rig.WriteU64(Cell, old);
            _bench.Rig.WriteU64(Cell + 8, Guard);
            ulong rd = _bench.Exec(Asm.Amo(funct5, dword, R.A0, R.A1, R.A2, aq: i % 2 == 0, rl: i % 3 == 0), Cell, operand);
            ulong memory = _bench.Rig.ReadU64(Cell);
            string what = $"{name}.{(dword ? 'd' : 'w')} old=0x{old:x} operand=0x{operand:x}";
            if (dword)
            {
                Assert.True(old == rd, $"{what}: rd=0x{rd:x}");
                Assert.True(apply(old, operand, false) == memory, $"{what}: memory=0x{memory:x}");
            }
            else
            {
                // .W: rd is the old word sign-extended; only the low word of memory changes.
                Assert.True(SextW(old) == rd, $"{what}: rd=0x{rd:x}");
                ulong expected = (old & 0xFFFF_FFFF_0000_0000) | (uint)apply(old, operand, true);
                Assert.True(expected == memory, $"{what}: memory=0x{memory:x}, expected 0x{expected:x}");
            }

            Assert.Equal(Guard, _bench.Rig.ReadU64(Cell + 8));
        }, iter: 3000, threads: 1);
    }

    [Fact]
    public void AmoW_SignExtendsTheOldWord()
    {
        _bench.Rig.WriteU64(Cell, 0x0000_0000_8000_0000);
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Exec(Asm.Amo(Asm.AmoAdd, false, R.A0, R.A1, R.A2), Cell, 1));
        Assert.Equal(0x8000_0001UL, _bench.Rig.ReadU64(Cell));
    }

    [Fact]
    public void LrSc_SucceedsOnceOnTheReservedAddress()
    {
        _bench.Rig.WriteU64(Cell, 41);
        Assert.Equal(41UL, _bench.Exec(Asm.LrD(R.A0, R.A1), Cell));
        Assert.Equal(0UL, _bench.Exec(Asm.ScD(R.A0, R.A2, R.A1), Cell, 42)); // 0 = success
        Assert.Equal(42UL, _bench.Rig.ReadU64(Cell));

        // The reservation is consumed: a second SC fails and does not write.
        Assert.Equal(1UL, _bench.Exec(Asm.ScD(R.A0, R.A2, R.A1), Cell, 43));
        Assert.Equal(42UL, _bench.Rig.ReadU64(Cell));
    }

    [Fact]
    public void Sc_FailsWithoutReservationOrOnAnotherAddress()
    {
        _bench.Rig.WriteU64(Cell, 7);
        _bench.Rig.WriteU64(Cell + 8, 8);
        Assert.Equal(1UL, _bench.Exec(Asm.ScW(R.A0, R.A2, R.A1), Cell, 99));
        Assert.Equal(7UL, _bench.Rig.ReadU64(Cell));

        Assert.Equal(7UL, _bench.Exec(Asm.LrW(R.A0, R.A1), Cell));
        Assert.Equal(1UL, _bench.Exec(Asm.ScW(R.A0, R.A2, R.A1), Cell + 8, 99));
        Assert.Equal(8UL, _bench.Rig.ReadU64(Cell + 8));
    }

    [Fact]
    public void LrW_SignExtendsAndScW_WritesOneWord()
    {
        _bench.Rig.WriteU64(Cell, 0x1111_1111_F000_0000);
        Assert.Equal(0xFFFF_FFFF_F000_0000UL, _bench.Exec(Asm.LrW(R.A0, R.A1), Cell));
        Assert.Equal(0UL, _bench.Exec(Asm.ScW(R.A0, R.A2, R.A1), Cell, 0xAAAA_AAAA_0000_0005));
        Assert.Equal(0x1111_1111_0000_0005UL, _bench.Rig.ReadU64(Cell));
    }

    // QEMU 7.2 with one hart (the reference) performs LR, SC and AMOs as a load and then a store, so
    // a misaligned one raises *load* address misaligned (4), not the store/AMO cause 6 of the spec.
    [Theory]
    [InlineData("amoadd.w", 2)]
    [InlineData("amoswap.d", 4)]
    [InlineData("amomaxu.d", 1)]
    [InlineData("lr.w", 2)]
    [InlineData("lr.d", 12)]
    public void MisalignedAtomics_TrapWithLoadAddressMisaligned(string op, int misalignment)
    {
        uint insn = op switch
        {
            "amoadd.w" => Asm.Amo(Asm.AmoAdd, false, R.A0, R.A1, R.A2),
            "amoswap.d" => Asm.Amo(Asm.AmoSwap, true, R.A0, R.A1, R.A2),
            "amomaxu.d" => Asm.Amo(Asm.AmoMaxu, true, R.A0, R.A1, R.A2),
            "lr.w" => Asm.LrW(R.A0, R.A1),
            _ => Asm.LrD(R.A0, R.A1),
        };
        _bench.Rig.WriteU64(Cell, 0x1234);
        _bench.Rig.WriteU64(Cell + 8, 0x5678);
        ulong address = Cell + (ulong)misalignment;
        _bench.Rig.SetX(R.A1, address).SetX(R.A2, 0xFFFF);
        var (mcause, mtval, mepc) = _bench.Trap(insn);
        Assert.Equal(4UL, mcause);
        Assert.Equal(address, mtval);
        Assert.Equal(_bench.Place(insn, 4), mepc);
        Assert.Equal(0x1234UL, _bench.Rig.ReadU64(Cell)); // nothing written
        Assert.Equal(0x5678UL, _bench.Rig.ReadU64(Cell + 8));
    }

    [Fact]
    public void ScWithoutReservation_FailsWithoutTrapping_EvenMisalignedOrUnmapped()
    {
        _bench.Rig.WriteU64(Cell, 0x1234);
        Assert.Equal(1UL, _bench.Exec(Asm.ScD(R.A0, R.A2, R.A1), Cell + 3, 0xFFFF));
        Assert.Equal(1UL, _bench.Exec(Asm.ScW(R.A0, R.A2, R.A1), 0x20, 0xFFFF));
        Assert.Equal(0x1234UL, _bench.Rig.ReadU64(Cell));
    }

    [Fact]
    public void ScD_OnAWordReservation_ThatIsMisaligned_Traps()
    {
        // lr.w reserves Cell+4 (4-aligned); sc.d there matches the reservation but is misaligned.
        _bench.Exec(Asm.LrW(R.A0, R.A1), Cell + 4);
        _bench.Rig.SetX(R.A1, Cell + 4);
        var (cause, tval, _) = _bench.Trap(Asm.ScD(R.A0, R.A2, R.A1));
        Assert.Equal(4UL, cause);
        Assert.Equal(Cell + 4, tval);
    }

    [Fact]
    public void AnySc_ClearsTheReservation()
    {
        _bench.Exec(Asm.LrD(R.A0, R.A1), Cell);
        Assert.Equal(1UL, _bench.Exec(Asm.ScD(R.A0, R.A2, R.A1), Cell + 8, 5)); // wrong address: fails...
        Assert.Equal(1UL, _bench.Exec(Asm.ScD(R.A0, R.A2, R.A1), Cell, 5));     // ...and the reservation is gone
    }

    [Fact]
    public void AmoOutsideRam_IsALoadAccessFaultAsOnQemu()
    {
        _bench.Rig.SetX(R.A1, 0x20);
        var (cause, tval, _) = _bench.Trap(Asm.Amo(Asm.AmoAdd, false, R.A0, R.A1, R.A2));
        Assert.Equal(5UL, cause);
        Assert.Equal(0x20UL, tval);
    }
}
