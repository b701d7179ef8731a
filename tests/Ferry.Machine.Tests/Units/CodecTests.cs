using CsCheck;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Devices;
using Ferry.Machine.State;
using Ferry.Machine.Tests.State;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Units;

public sealed class PageCodecTests
{
    private const int Size = PageCodec.PageSize;

    private static byte[] RoundTrip(byte[] page, bool compress, out PageEncoding encoding)
    {
        var buffer = new byte[Size];
        (encoding, int length) = PageCodec.Encode(page, buffer, compress);
        var decoded = new byte[Size];
        Array.Fill(decoded, (byte)0xCC); // Decode must overwrite everything
        PageCodec.Decode(encoding, buffer.AsSpan(0, length), decoded);
        return decoded;
    }

    [Fact]
    public void ZeroPage_IsAMarker()
    {
        byte[] zero = new byte[Size];
        Assert.Equal(zero, RoundTrip(zero, true, out PageEncoding e));
        Assert.Equal(PageEncoding.Zero, e);
    }

    [Fact]
    public void CompressiblePage_UsesLz4_AndIncompressibleStaysRaw()
    {
        byte[] text = new byte[Size];
        for (int i = 0; i < Size; i++)
        {
            text[i] = (byte)"ferry "[i % 6];
        }

        Assert.Equal(text, RoundTrip(text, true, out PageEncoding e1));
        Assert.Equal(PageEncoding.Lz4, e1);
        Assert.Equal(text, RoundTrip(text, false, out PageEncoding e2));
        Assert.Equal(PageEncoding.Raw, e2);

        byte[] noise = new byte[Size];
        new Random(7).NextBytes(noise);
        Assert.Equal(noise, RoundTrip(noise, true, out PageEncoding e3));
        Assert.Equal(PageEncoding.Raw, e3);
    }

    [Fact]
    public void RandomPages_RoundTrip()
    {
        // Pages made of runs of random bytes: some compress, some do not.
        Gen.Select(Gen.Byte.Array[1, 64], Gen.Int[1, 512], Gen.Bool).Sample((pattern, run, compress) =>
        {
            var page = new byte[Size];
            for (int i = 0; i < Size; i++)
            {
                page[i] = pattern[i / run % pattern.Length];
            }

            Assert.Equal(page, RoundTrip(page, compress, out _));
        }, iter: 300);
    }

    [Fact]
    public void MalformedInput_IsInvalidData()
    {
        var page = new byte[Size];
        Assert.Throws<InvalidDataException>(() => PageCodec.Decode(PageEncoding.Zero, new byte[1], page));
        Assert.Throws<InvalidDataException>(() => PageCodec.Decode(PageEncoding.Raw, new byte[100], page));
        Assert.Throws<InvalidDataException>(() => PageCodec.Decode(PageEncoding.Lz4, [], page));
        Assert.Throws<InvalidDataException>(() => PageCodec.Decode(PageEncoding.Lz4, new byte[Size], page));
        Assert.Throws<InvalidDataException>(() => PageCodec.Decode(PageEncoding.Lz4, [0x1F, 1, 2, 3], page)); // decodes short
        Assert.Throws<InvalidDataException>(() => PageCodec.Decode((PageEncoding)7, new byte[10], page));
    }
}

public sealed class StateCodecTests
{
    private static readonly Lazy<MachineState> State = new(() => StateSamples.Busy());

    [Fact]
    public void RoundTrip_IsExact()
    {
        byte[] encoded = StateCodec.Encode(State.Value);
        MachineState decoded = StateCodec.Decode(encoded);
        Assert.Equal(encoded, StateCodec.Encode(decoded));

        HartState a = State.Value.Hart, b = decoded.Hart;
        Assert.Equal(a.X, b.X);
        Assert.Equal(a.Pc, b.Pc);
        Assert.Equal(a.Mstatus, b.Mstatus);
        Assert.Equal(a.Mie, b.Mie);
        Assert.Equal(a.VirtualClock, b.VirtualClock);
        Assert.Equal(a.InstructionsRetired, b.InstructionsRetired);
        Assert.Equal(a.PmpAddr, b.PmpAddr);
        Assert.Equal(State.Value.Config, decoded.Config);
        Assert.Equal(State.Value.Device<ClintState>(), decoded.Device<ClintState>());
        Assert.Equal("ab\n"u8.ToArray(), decoded.Device<UartState>().PendingInput);
        Assert.Equal(State.Value.Device<UartState>().Transmitted, decoded.Device<UartState>().Transmitted);
        Assert.Equal(State.Value.Device<UartState>() with { PendingInput = [] }, decoded.Device<UartState>() with { PendingInput = [] });
        Assert.Equal(State.Value.Device<ClockState>(), decoded.Device<ClockState>());
        PlicState p = State.Value.Device<PlicState>(), q = decoded.Device<PlicState>();
        Assert.Equal(p.Priority, q.Priority);
        Assert.Equal(p.Enable, q.Enable);
        Assert.Equal(p.Threshold, q.Threshold);
        Assert.Equal(p.Pending, q.Pending);
        Assert.Equal(p.Claimed, q.Claimed);
        Assert.NotEqual(0UL, a.Mtvec);
        Assert.NotEqual(0u, p.Priority[VirtMachine.UartIrq]);
    }

    [Fact]
    public void EveryTruncation_IsRejected()
    {
        byte[] encoded = StateCodec.Encode(State.Value);
        for (int length = 0; length < encoded.Length; length++)
        {
            Assert.Throws<InvalidDataException>(() => StateCodec.Decode(encoded.AsSpan(0, length)));
        }
    }

    [Fact]
    public void TrailingBytes_AreRejected()
    {
        byte[] encoded = [.. StateCodec.Encode(State.Value), 0];
        Assert.Contains("trailing", Assert.Throws<InvalidDataException>(() => StateCodec.Decode(encoded)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadFields_AreRejected()
    {
        byte[] encoded = StateCodec.Encode(State.Value);
        byte[] version = (byte[])encoded.Clone();
        version[0] = 9;
        Assert.Contains("version", Assert.Throws<InvalidDataException>(() => StateCodec.Decode(version)).Message, StringComparison.Ordinal);

        int privilegeOffset = StateSamples.PayloadOffset(encoded, "HART") + 8 + (32 * 8); // pc, x
        Assert.Equal((byte)State.Value.Hart.Privilege, encoded[privilegeOffset]);
        byte[] priv = (byte[])encoded.Clone();
        priv[privilegeOffset] = 2;
        Assert.Contains("privilege", Assert.Throws<InvalidDataException>(() => StateCodec.Decode(priv)).Message, StringComparison.Ordinal);

        Assert.Throws<InvalidDataException>(() => StateCodec.Decode(new byte[StateCodec.MaxEncodedSize + 1]));
    }

    [Fact]
    public void Garbage_IsRejectedAsInvalidData()
    {
        // Any input either decodes or throws InvalidDataException: never another exception type.
        byte[] valid = StateCodec.Encode(State.Value);
        Gen.Select(Gen.Int[0, valid.Length - 1], Gen.Byte, Gen.Byte.Array[0, 600]).Sample((at, value, random) =>
        {
            byte[] mutated = (byte[])valid.Clone();
            mutated[at] = value;
            foreach (byte[] input in new[] { mutated, random })
            {
                try
                {
                    StateCodec.Decode(input);
                }
                catch (InvalidDataException)
                {
                }
            }
        }, iter: 2000);
    }
}
