using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.State;

public sealed class DeterminismTests
{
    private static GuestImage Kvstore() => GuestRunner.Load("kvstore", ("table_mib", 8), ("ops", 400000), ("report_every", 25000));

    private static GuestImage Idle() => GuestRunner.Load("idle", ("interval_ms", 1), ("beats", 40));

    public static TheoryData<string, ulong, ulong> Points => new()
    {
        // guest, snapshot point N, end point M (instructions); the guest prints on both sides of N.
        // idle at N has its timer armed and already pending (mtime just passed mtimecmp).
        { "kvstore", 9_000_000, 14_000_000 },
        { "idle", 25_000, 30_000 },
    };

    private static GuestImage Image(string guest) => guest == "kvstore" ? Kvstore() : Idle();

    private static (string Digest, byte[] Console, RunOutcome Outcome) RunTo(GuestImage image, ulong instructions)
    {
        using VirtMachine m = GuestRunner.NewMachine(image);
        RunOutcome outcome = GuestRunner.RunTo(m, instructions);
        return (StateDigest.Compute(m), m.Console.Read(0).Bytes, outcome);
    }

    [Theory]
    [MemberData(nameof(Points))]
    public void TwoIcountRuns_ToTheSameCount_HaveEqualDigests(string guest, ulong n, ulong m)
    {
        var a = RunTo(Image(guest), m);
        var b = RunTo(Image(guest), m);
        Assert.Equal(RunOutcome.InstructionLimit, a.Outcome);
        Assert.Equal(a.Digest, b.Digest);
        Assert.Equal(a.Console, b.Console);

        // The digest is sensitive: one instruction more (or the earlier point) gives another state.
        Assert.NotEqual(a.Digest, RunTo(Image(guest), m + 1).Digest);
        Assert.NotEqual(a.Digest, RunTo(Image(guest), n).Digest);
    }

    [Fact]
    public void A_hart_running_on_decoded_pages_another_hart_gave_back_computes_the_same()
    {
        // kvstore, then idle (other code at the same addresses), each machine disposed: the third
        // run takes decoded-page arrays the others gave back (DecodedPagePool, shared with the
        // tests running beside it), and must reach the first run's state exactly. (That a page
        // given back is cleared is the next test's.)
        var first = RunTo(Kvstore(), 3_000_000);
        var other = RunTo(Idle(), 30_000);
        var again = RunTo(Kvstore(), 3_000_000);
        Assert.Equal(first.Digest, again.Digest);
        Assert.Equal(first.Console, again.Console);
        Assert.NotEqual(first.Digest, other.Digest);
    }

    [Fact]
    public void A_decoded_page_given_back_is_cleared()
    {
        var page = new Ferry.Machine.Cpu.DecodedInsn[Ferry.Machine.Cpu.DecodedPagePool.Slots];
        page[7].Op = Ferry.Machine.Cpu.Op.Add;
        page[2047].Imm = 42;
        Ferry.Machine.Cpu.DecodedPagePool.Return(page);

        // Once given back the array is the pool's: tests running beside this one may take it and
        // decode into it (CI saw that), so what is checked is what a hart gets: the pool is a
        // stack, so this one, unless another hart took it first, and either way a cleared array.
        Ferry.Machine.Cpu.DecodedInsn[] rented = Ferry.Machine.Cpu.DecodedPagePool.Rent();
        Assert.Equal(Ferry.Machine.Cpu.DecodedPagePool.Slots, rented.Length);
        Assert.All(rented, d => Assert.Equal(default, d));
    }

    [Theory]
    [MemberData(nameof(Points))]
    public void SnapshotRestore_ContinuesExactlyLikeAnUninterruptedRun(string guest, ulong n, ulong m)
    {
        var straight = RunTo(Image(guest), m);

        byte[] snapshot;
        byte[] before;
        using (VirtMachine first = GuestRunner.NewMachine(Image(guest)))
        {
            Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(first, n));
            using var stream = new MemoryStream();
            Snapshot.Save(first, stream);
            snapshot = stream.ToArray();
            before = first.Console.Read(0).Bytes;
        }

        using VirtMachine restored = Snapshot.Load(snapshot);
        Assert.Equal(n, restored.Hart.InstructionsRetired);
        Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(restored, m));
        (long offset, byte[] after) = restored.Console.Read(0);
        Assert.Equal(before.Length, offset);
        Assert.NotEmpty(after); // the guest printed after the snapshot point: the test compares something
        byte[] joined = [.. before, .. after];
        Assert.Equal(straight.Console, joined);
        Assert.Equal(straight.Digest, StateDigest.Compute(restored));
    }

    [Fact]
    public void SnapshotTakenInWfi_ResumesLikeAStraightRun()
    {
        const ulong M = 30_000;
        var straight = RunTo(Idle(), M);
        using VirtMachine first = GuestRunner.NewMachine(Idle());
        GuestRunner.RunTo(first, 24_000);
        while (!first.Hart.WaitingForInterrupt && first.Hart.InstructionsRetired < 29_000)
        {
            GuestRunner.RunTo(first, first.Hart.InstructionsRetired + 1);
        }

        Assert.True(first.Hart.WaitingForInterrupt, "the idle guest never stopped in WFI");
        using var stream = new MemoryStream();
        Snapshot.Save(first, stream);
        byte[] before = first.Console.Read(0).Bytes;

        using VirtMachine restored = Snapshot.Load(stream.ToArray());
        Assert.True(restored.Hart.WaitingForInterrupt);
        Assert.Equal(first.Hart.VirtualClock, restored.Hart.VirtualClock);
        GuestRunner.RunTo(restored, M);
        byte[] joined = [.. before, .. restored.Console.Read(0).Bytes];
        Assert.Equal(straight.Console, joined);
        Assert.Equal(straight.Digest, StateDigest.Compute(restored));
    }

    [Fact]
    public void SnapshotRoundTrip_PreservesTheDigest()
    {
        using VirtMachine m = GuestRunner.NewMachine(Kvstore());
        GuestRunner.RunTo(m, 9_500_000);
        using var stream = new MemoryStream();
        Snapshot.Save(m, stream);
        using VirtMachine restored = Snapshot.Load(stream.ToArray());
        Assert.Equal(StateDigest.Compute(m), StateDigest.Compute(restored));
    }

    [Theory]
    [MemberData(nameof(Points))]
    public void StoppedAndResumedRun_EqualsAStraightRun(string guest, ulong n, ulong m)
    {
        var straight = RunTo(Image(guest), m);
        using VirtMachine chunked = GuestRunner.NewMachine(Image(guest));
        Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(chunked, n));
        Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(chunked, n + 1));
        Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(chunked, n + ((m - n) / 3)));
        Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(chunked, m));
        Assert.Equal(m, chunked.Hart.InstructionsRetired);
        Assert.Equal(straight.Digest, StateDigest.Compute(chunked));
        Assert.Equal(straight.Console, chunked.Console.Read(0).Bytes);
    }

    [Fact]
    public void CompletedRuns_ProduceTheSameFinalState()
    {
        using VirtMachine a = GuestRunner.NewMachine(Idle());
        using VirtMachine b = GuestRunner.NewMachine(Idle());
        Assert.Equal(RunOutcome.GuestExited, GuestRunner.RunTo(a, ulong.MaxValue));
        Assert.Equal(RunOutcome.GuestExited, GuestRunner.RunTo(b, ulong.MaxValue));
        Assert.Equal(a.Hart.InstructionsRetired, b.Hart.InstructionsRetired);
        Assert.Equal(a.Hart.VirtualClock, b.Hart.VirtualClock);
        Assert.True(a.Hart.VirtualClock > a.Hart.InstructionsRetired * 10, "idle should have skipped time in WFI");
        Assert.Equal(StateDigest.Compute(a), StateDigest.Compute(b));
    }
}

public sealed class SnapshotValidationTests
{
    private static readonly Lazy<byte[]> Valid = new(() =>
    {
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("hello"), memory: 4UL << 20);
        GuestRunner.RunTo(m, ulong.MaxValue);
        using var stream = new MemoryStream();
        Snapshot.Save(m, stream);
        return stream.ToArray();
    });

    private static SnapshotException Refused(byte[] file) => Assert.Throws<SnapshotException>(() => Snapshot.Load(file).Dispose());

    [Fact]
    public void ValidSnapshot_Loads()
    {
        using VirtMachine m = Snapshot.Load(Valid.Value);
        Assert.True(m.Hart.InstructionsRetired > 0);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(31)]
    [InlineData(-1)] // all but the last byte
    [InlineData(-500)]
    public void Truncated_IsRefused(int length)
    {
        byte[] file = Valid.Value;
        byte[] cut = file[..(length >= 0 ? length : file.Length + length)];
        Assert.Contains("truncated", Refused(cut).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadMagic_IsRefused()
    {
        byte[] file = (byte[])Valid.Value.Clone();
        file[0] ^= 0xFF;
        Assert.Contains("magic", Refused(file).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WrongVersion_IsRefused()
    {
        byte[] file = (byte[])Valid.Value.Clone();
        file[8] = 99;
        Assert.Contains("version 99", Refused(file).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(Snapshot.HeaderSize + 3)]
    [InlineData(Snapshot.HeaderSize + 400)]
    [InlineData(-9)] // last payload byte
    [InlineData(-3)] // inside the checksum
    public void CorruptedByte_FailsTheChecksum(int at)
    {
        byte[] file = (byte[])Valid.Value.Clone();
        file[at >= 0 ? at : file.Length + at] ^= 0x10;
        Assert.Contains("checksum", Refused(file).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TrailingBytes_AreRefused()
    {
        byte[] file = [.. Valid.Value, 0];
        Assert.Contains("trailing", Refused(file).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ChecksummedButInvalidContent_IsRefused()
    {
        // A hostile file with a correct checksum: the state length field points past the payload.
        byte[] file = (byte[])Valid.Value.Clone();
        BitConverter.TryWriteBytes(file.AsSpan(Snapshot.HeaderSize), 0x7FFF_0000u);
        Reseal(file);
        Assert.Contains("out of range", Refused(file).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ChecksummedButGarbledState_IsRefused()
    {
        byte[] file = (byte[])Valid.Value.Clone();
        file[Snapshot.HeaderSize + 4] = 0xEE; // the state's own version field
        Reseal(file);
        Assert.Contains("snapshot is invalid", Refused(file).Message, StringComparison.Ordinal);
    }

    private static void Reseal(byte[] file)
    {
        ulong crc = System.IO.Hashing.Crc64.HashToUInt64(file.AsSpan(0, file.Length - 8));
        BitConverter.TryWriteBytes(file.AsSpan(file.Length - 8), crc);
    }
}
