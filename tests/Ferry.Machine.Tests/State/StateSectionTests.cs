using System.Buffers.Binary;
using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Devices;
using Ferry.Machine.State;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.State;

/// <summary>Machine states to encode, and the section layout of an encoding (read independently of the codec).</summary>
internal static class StateSamples
{
    /// <summary>A guest that ran (CSRs, clock, UART output), a programmed PLIC with a claimed source, UART interrupts on, queued input.</summary>
    public static MachineState Busy()
    {
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("idle", ("interval_ms", 1), ("beats", 3)), memory: 4UL << 20);
        GuestRunner.RunTo(m, 25_000);
        Assert.True(m.Plic.Write(4 * VirtMachine.UartIrq, 4, 5));
        Assert.True(m.Plic.Write(0x2080, 4, 1u << VirtMachine.UartIrq));
        Assert.True(m.Plic.Write(0x20_1000, 4, 2));
        Assert.True(m.Uart.Write(1, 1, 0x03)); // RDI | THRI: the line rises, source 10 pends
        Assert.True(m.Plic.Read(0x20_1004, 4, out ulong claimed));
        Assert.Equal((ulong)VirtMachine.UartIrq, claimed);
        Assert.True(m.Uart.Write(7, 1, 0x5A));
        m.Uart.EnqueueInput("ab\n"u8);
        return m.SaveState();
    }

    /// <summary>(tag, version, payload) of each section, in order.</summary>
    public static List<(string Tag, ushort Version, byte[] Payload)> Sections(byte[] encoded)
    {
        var list = new List<(string, ushort, byte[])>();
        int at = 4;
        for (int i = 0; i < BinaryPrimitives.ReadUInt16LittleEndian(encoded.AsSpan(2)); i++)
        {
            string tag = Encoding.ASCII.GetString(encoded, at, 4);
            ushort version = BinaryPrimitives.ReadUInt16LittleEndian(encoded.AsSpan(at + 4));
            int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(encoded.AsSpan(at + 6));
            list.Add((tag, version, encoded.AsSpan(at + 10, length).ToArray()));
            at += 10 + length;
        }

        Assert.Equal(encoded.Length, at);
        return list;
    }

    public static int PayloadOffset(byte[] encoded, string tag)
    {
        int at = 4;
        foreach ((string t, _, byte[] payload) in Sections(encoded))
        {
            if (t == tag)
            {
                return at + 10;
            }

            at += 10 + payload.Length;
        }

        throw new InvalidOperationException($"no section {tag}");
    }

    public static byte[] Build(IEnumerable<(string Tag, ushort Version, byte[] Payload)> sections, ushort format = StateCodec.FormatVersion, int? count = null)
    {
        var list = sections.ToList();
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write(format);
        w.Write((ushort)(count ?? list.Count));
        foreach ((string tag, ushort version, byte[] payload) in list)
        {
            w.Write(Encoding.ASCII.GetBytes(tag));
            w.Write(version);
            w.Write((uint)payload.Length);
            w.Write(payload);
        }

        w.Flush();
        return ms.ToArray();
    }
}

public sealed class StateSectionTests
{
    private static readonly Lazy<byte[]> Encoded = new(() => StateCodec.Encode(StateSamples.Busy()));

    private static List<(string Tag, ushort Version, byte[] Payload)> Sections() => StateSamples.Sections(Encoded.Value);

    private static string Refused(byte[] input) => Assert.Throws<InvalidDataException>(() => StateCodec.Decode(input)).Message;

    [Fact]
    public void Encoding_IsOneSectionPerComponent_InOrder()
    {
        Assert.Equal(["CONF", "HART", "CLCK", "CLNT", "UART", "PLIC", "VIRT"], Sections().Select(s => s.Tag));
        // The hart's version 2 added the f registers; the virtio devices' version 2 a u32 length for a device's bytes.
        Assert.All(Sections(), s => Assert.Equal(s.Tag is "HART" or "VIRT" ? 2 : 1, s.Version));
        Assert.Equal(StateCodec.Sections.Select(s => s.Tag), Sections().Select(s => s.Tag));
        Assert.Equal(Encoded.Value, StateSamples.Build(Sections()));
    }

    [Fact]
    public void SectionOrder_IsFree()
    {
        var reversed = Sections();
        reversed.Reverse();
        Assert.Equal(Encoded.Value, StateCodec.Encode(StateCodec.Decode(StateSamples.Build(reversed))));
    }

    [Fact]
    public void UnknownTag_IsRefused()
    {
        var sections = Sections();
        sections.Add(("VRTX", 1, [1, 2, 3]));
        Assert.Equal("machine state has an unknown section 'VRTX'", Refused(StateSamples.Build(sections)));

        sections = Sections();
        sections[4] = ("uart", sections[4].Version, sections[4].Payload);
        Assert.Contains("unknown section 'uart'", Refused(StateSamples.Build(sections)), StringComparison.Ordinal);

        byte[] binary = (byte[])Encoded.Value.Clone();
        binary[4] = 0;
        Assert.Contains("unknown section '\\x00ONF'", Refused(binary), StringComparison.Ordinal);
    }

    [Fact]
    public void BadSectionVersion_IsRefused()
    {
        var sections = Sections();
        sections[5] = ("PLIC", 2, sections[5].Payload);
        Assert.Equal("section 'PLIC' version 2 is not supported (this Ferry reads version 1)", Refused(StateSamples.Build(sections)));

        sections = Sections();
        sections[1] = ("HART", 0, sections[1].Payload);
        Assert.Contains("section 'HART' version 0", Refused(StateSamples.Build(sections)), StringComparison.Ordinal);

        Assert.Contains("format version 1 is not supported", Refused(StateSamples.Build(Sections(), format: 1)), StringComparison.Ordinal);
    }

    [Fact]
    public void TruncatedSection_IsRefused()
    {
        var sections = Sections();
        sections[4] = ("UART", 1, sections[4].Payload[..^1]);
        Assert.Equal("section 'UART' is truncated", Refused(StateSamples.Build(sections)));

        // A length beyond the end of the state.
        byte[] cut = Encoded.Value[..^14]; // VIRT (a 10-byte header and an empty list) and 3 bytes of PLIC
        Assert.Contains("section 'PLIC' is truncated", Refused(cut), StringComparison.Ordinal);

        // Fewer sections than declared.
        Assert.Contains("truncated in the header of section 7 of 7", Refused(StateSamples.Build(Sections().Take(6), count: 7)), StringComparison.Ordinal);
    }

    [Fact]
    public void OverlongPayload_IsRefused()
    {
        var sections = Sections();
        sections[3] = ("CLNT", 1, [.. sections[3].Payload, 0]);
        Assert.Equal("section 'CLNT' has 1 unexpected trailing bytes", Refused(StateSamples.Build(sections)));
    }

    [Fact]
    public void OversizedSection_IsRefusedBeforeItIsRead()
    {
        var sections = Sections();
        sections[5] = ("PLIC", 1, new byte[PlicState.Section.MaxLength + 1]);
        Assert.Equal($"section 'PLIC' is {PlicState.Section.MaxLength + 1} bytes, over its {PlicState.Section.MaxLength} byte limit", Refused(StateSamples.Build(sections)));

        // The declared length alone is enough: the bytes need not be there.
        byte[] header = StateSamples.Build([("UART", 1, [])]);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(10), uint.MaxValue);
        Assert.Contains("over its", Refused(header), StringComparison.Ordinal);

        // The whole state has a limit too, and too many sections are refused.
        Assert.Contains("exceeds", Refused(new byte[StateCodec.MaxEncodedSize + 1]), StringComparison.Ordinal);
        Assert.Contains("sections, more than", Refused(StateSamples.Build([], count: StateCodec.MaxSections + 1)), StringComparison.Ordinal);
    }

    [Fact]
    public void DuplicateSection_IsRefused()
    {
        var sections = Sections();
        sections.Insert(3, sections[2]);
        Assert.Equal("machine state has a duplicate section 'CLCK'", Refused(StateSamples.Build(sections)));
    }

    [Fact]
    public void MissingSection_IsRefused()
    {
        var sections = Sections();
        sections.RemoveAt(5);
        Assert.Equal("machine state has no 'PLIC' section", Refused(StateSamples.Build(sections)));
    }

    [Fact]
    public void FieldsADeviceCannotHold_AreRefused()
    {
        var sections = Sections();
        byte[] plic = (byte[])sections[5].Payload.Clone();
        plic[4 * VirtMachine.UartIrq] = 9; // priority 9 > 7
        sections[5] = ("PLIC", 1, plic);
        Assert.Contains("PLIC priority 9", Refused(StateSamples.Build(sections)), StringComparison.Ordinal);

        sections = Sections();
        byte[] uart = (byte[])sections[4].Payload.Clone();
        uart[0] = 0xFF; // IER has 4 bits
        sections[4] = ("UART", 1, uart);
        Assert.Contains("UART state", Refused(StateSamples.Build(sections)), StringComparison.Ordinal);
    }

    [Fact]
    public void Digest_CoversEverySection()
    {
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("idle", ("interval_ms", 1), ("beats", 3)), memory: 4UL << 20);
        GuestRunner.RunTo(m, 10_000);
        var seen = new HashSet<string> { StateDigest.Compute(m) };

        // One change per device section: each must move the digest.
        Assert.True(m.Plic.Write(4 * 3, 4, 1));
        Assert.True(seen.Add(StateDigest.Compute(m)), "PLIC");
        Assert.True(m.Uart.Write(7, 1, 0x42));
        Assert.True(seen.Add(StateDigest.Compute(m)), "UART");
        Assert.True(m.Clint.Write(0x4000, 8, 12345));
        Assert.True(seen.Add(StateDigest.Compute(m)), "CLINT");
        m.Clock.SetMTime(m.Clock.MTime + 1);
        Assert.True(seen.Add(StateDigest.Compute(m)), "clock");
        m.Hart.SetRegister(5, 0xF00D);
        Assert.True(seen.Add(StateDigest.Compute(m)), "hart");
    }
}
