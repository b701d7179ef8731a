using System.Buffers.Binary;
using System.Text;
using CsCheck;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;
using Ferry.Machine.State;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// The wire protocol, read as the destination reads it: the stream is hostile, so every decoder
/// either returns exactly what was encoded or throws a <see cref="ProtocolException"/> with a
/// reason, and never anything else.
/// </summary>
public sealed class ProtocolTests
{
    private const int PageSize = GuestMemory.PageSize;

    // Hello layout: magic 0..7 | version 8..9 | role 10 | token 11..42 | name length 43..44 | name ...
    private const int VersionOffset = 8;
    private const int RoleOffset = 10;

    private static readonly byte[] Token = Enumerable.Range(1, Hello.TokenLength).Select(i => (byte)(i * 7)).ToArray();

    private static Hello SampleHello(string name = "guest-1") => new()
    {
        Role = ConnectionRole.Main,
        Token = Token,
        VmName = name,
        Machine = new MachineConfig { MemorySize = 64UL << 20, Icount = true, IdleSleep = false },
        Strategy = StrategyKind.Hybrid,
        StopAt = 123_456_789,
        LocalityPages = 16,
        PageSize = 4096,
    };

    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token;

    private static ProtocolException Rejects(Action decode, string expectedInMessage)
    {
        ProtocolException e = Assert.Throws<ProtocolException>(decode);
        Assert.Contains(expectedInMessage, e.Message, StringComparison.Ordinal);
        return e;
    }

    /// <summary>A decoder on hostile input: it may accept it or reject it as a protocol error, nothing else.</summary>
    private static void DecodesOrRejects(Action decode)
    {
        try
        {
            decode();
        }
        catch (ProtocolException)
        {
        }
    }

    private static byte[] Mutate(byte[] valid, (int Index, byte Xor)[] flips, int truncateTo)
    {
        byte[] m = valid.Length == 0 ? [] : (byte[])valid.Clone();
        foreach ((int index, byte xor) in flips)
        {
            if (m.Length > 0)
            {
                m[index % m.Length] ^= xor;
            }
        }

        return m[..Math.Min(m.Length, truncateTo)];
    }

    private static readonly Gen<(int, byte)[]> Flips = Gen.Select(Gen.Int[0, int.MaxValue], Gen.Byte[1, 255]).Array[1, 6];

    // ---------------------------------------------------------------- round trips

    [Theory]
    [InlineData(ConnectionRole.Main, StrategyKind.PreCopy, "guest-1")]
    [InlineData(ConnectionRole.Fault, StrategyKind.PostCopy, "a")]
    [InlineData(ConnectionRole.Main, StrategyKind.Hybrid, "Vm_2.test-3")]
    public void Hello_round_trips_every_field(ConnectionRole role, StrategyKind strategy, string name)
    {
        Hello h = SampleHello(name) with
        {
            Role = role,
            Strategy = strategy,
            StopAt = ulong.MaxValue - 3,
            LocalityPages = 1024,
            LocalityAdaptive = true,
            Machine = new MachineConfig { MemorySize = 3UL << 30, Icount = false, IdleSleep = true },
        };

        Hello d = Hello.Decode(h.Encode());

        Assert.Equal(Hello.ProtocolVersion, d.Version);
        Assert.Equal(role, d.Role);
        Assert.Equal(Token, d.Token);
        Assert.Equal(name, d.VmName);
        Assert.Equal(h.Machine, d.Machine); // MachineConfig is a record: value equality
        Assert.Equal(strategy, d.Strategy);
        Assert.Equal(ulong.MaxValue - 3, d.StopAt);
        Assert.Equal((ushort)1024, d.LocalityPages);
        Assert.True(d.LocalityAdaptive);
        Assert.Equal(4096u, d.PageSize);

        Hello d2 = Hello.Decode(SampleHello().Encode());
        Assert.Equal(new MachineConfig { MemorySize = 64UL << 20, Icount = true, IdleSleep = false }, d2.Machine);
        Assert.Equal(123_456_789UL, d2.StopAt);
    }

    [Fact]
    public void Hello_name_of_exactly_the_limit_is_accepted()
    {
        string name = new('n', Hello.MaxNameBytes);
        Assert.Equal(name, Hello.Decode(SampleHello(name).Encode()).VmName);
    }

    [Theory]
    [InlineData(true, "welcome")]
    [InlineData(false, "memory size mismatch: \u00fcber")]
    [InlineData(false, "")]
    public void HelloReply_round_trips(bool accepted, string message)
    {
        HelloReply d = HelloReply.Decode(new HelloReply(accepted, message).Encode());
        Assert.Equal(accepted, d.Accepted);
        Assert.Equal(message, d.Message);
    }

    [Fact]
    public void HelloReply_and_ReasonMessage_cut_long_text_to_1000_characters()
    {
        string longText = new('r', 5000);
        Assert.Equal(longText[..1000], HelloReply.Decode(new HelloReply(false, longText).Encode()).Message);
        Assert.Equal(longText[..1000], ReasonMessage.Decode(ReasonMessage.Encode(longText)));
    }

    [Theory]
    [InlineData("the VM stays at the source")]
    [InlineData("")]
    [InlineData("\u00e9chec \u2014 r\u00e9seau")]
    public void ReasonMessage_round_trips(string reason)
        => Assert.Equal(reason, ReasonMessage.Decode(ReasonMessage.Encode(reason)));

    [Fact]
    public void StateBundle_round_trips_with_and_without_an_absent_map()
    {
        const int pageCount = 130; // 3 words, 2 bits in the last one
        byte[] state = new byte[777];
        new Random(1).NextBytes(state);
        ulong[] absent = [0xDEAD_BEEF_0123_4567, ulong.MaxValue, 0b11];

        StateBundle with = StateBundle.Decode(new StateBundle(state, absent, 0xFEDC_BA98_7654_3210, 4242).Encode(), pageCount);
        Assert.Equal(state, with.MachineState);
        Assert.Equal(absent, with.AbsentPages);
        Assert.Equal(0xFEDC_BA98_7654_3210UL, with.SentDigest);
        Assert.Equal(4242u, with.SentPages);

        StateBundle without = StateBundle.Decode(new StateBundle(state, null, 17, 0).Encode(), pageCount);
        Assert.Equal(state, without.MachineState);
        Assert.Null(without.AbsentPages);
        Assert.Equal(17UL, without.SentDigest);
        Assert.Equal(0u, without.SentPages);

        // A page count that is a multiple of 64: every bit of the last word names a real page.
        ulong[] full = [ulong.MaxValue, ulong.MaxValue];
        Assert.Equal(full, StateBundle.Decode(new StateBundle([], full, 0, 0).Encode(), 128).AbsentPages);
    }

    [Theory]
    [InlineData(0u, 0u, (ushort)1, 1)]
    [InlineData(99u, 95u, (ushort)10, 105)] // ends exactly at the last page
    [InlineData(300u, 256u, (ushort)1024, 4096)]
    public void PageRequest_round_trips(uint fault, uint first, ushort count, int pageCount)
    {
        var buffer = new byte[PageRequest.Size];
        new PageRequest(fault, first, count).Encode(buffer);
        Assert.Equal(new PageRequest(fault, first, count), PageRequest.Decode(buffer, pageCount));
    }

    [Fact]
    public void Complete_Verified_and_Resumed_round_trip()
    {
        Assert.Equal(new Complete(ulong.MaxValue, 65_536), Complete.Decode(new Complete(ulong.MaxValue, 65_536).Encode()));

        byte[] json = Encoding.UTF8.GetBytes("{\"faults\":[1,2,3]}");
        Verified v = Verified.Decode(new Verified(true, "digest matches", json).Encode());
        Assert.True(v.Ok);
        Assert.Equal("digest matches", v.Message);
        Assert.Equal(json, v.MetricsJson);
        Verified bad = Verified.Decode(new Verified(false, "digest differs", []).Encode());
        Assert.False(bad.Ok);
        Assert.Equal("digest differs", bad.Message);
        Assert.Empty(bad.MetricsJson);

        var boot = Guid.NewGuid();
        Resumed r = Resumed.Decode(new Resumed(12.345, -42, boot).Encode());
        Assert.Equal(12.345, r.SwitchoverMs, 9);
        Assert.Equal(-42, r.MonotonicTicks);
        Assert.Equal(boot, r.BootId);
        Assert.Equal(3_600_000.0, Resumed.Decode(new Resumed(3_600_000.0, 1, boot).Encode()).SwitchoverMs); // one hour: the limit
    }

    private static byte[] Filled(int seed, bool compressible)
    {
        var page = new byte[PageSize];
        if (compressible)
        {
            for (int i = 0; i < PageSize; i++)
            {
                page[i] = (byte)"ferry pages "[(i + seed) % 12];
            }
        }
        else
        {
            new Random(seed).NextBytes(page);
        }

        return page;
    }

    /// <summary>The encodings of a batch's entries, parsed from the documented layout.</summary>
    private static List<(uint Page, PageEncoding Encoding, int Length)> Entries(ReadOnlySpan<byte> payload)
    {
        var list = new List<(uint, PageEncoding, int)>();
        int count = BinaryPrimitives.ReadUInt16LittleEndian(payload[2..]);
        int pos = PageBatchWriter.HeaderSize + (payload[0] == (byte)PagePhase.FaultReply ? PageBatchWriter.FaultTimingSize : 0);
        for (int i = 0; i < count; i++)
        {
            uint page = BinaryPrimitives.ReadUInt32LittleEndian(payload[pos..]);
            var encoding = (PageEncoding)payload[pos + 4];
            int length = BinaryPrimitives.ReadUInt16LittleEndian(payload[(pos + 5)..]);
            list.Add((page, encoding, length));
            pos += PageBatchWriter.EntryHeaderSize + length;
        }

        Assert.Equal(payload.Length, pos);
        return list;
    }

    private static List<(int Page, bool Zero, byte[] Content)> ReadAll(ReadOnlySpan<byte> payload, int pageCount, out PagePhase phase, out uint fault)
    {
        var got = new List<(int, bool, byte[])>();
        var scratch = new byte[PageSize];
        Array.Fill(scratch, (byte)0xCC); // a zero marker must clear the scratch page
        (phase, fault, int count) = PageBatchReader.Read(payload, pageCount, scratch, (page, zero, content) => got.Add((page, zero, content.ToArray())));
        Assert.Equal(got.Count, count);
        return got;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PageBatch_round_trips_zero_raw_and_lz4_pages(bool compress)
    {
        const int pageCount = 64;
        (int Page, byte[] Content)[] pages =
        [
            (5, new byte[PageSize]),
            (0, Filled(1, compressible: false)),
            (63, Filled(2, compressible: true)),
            (17, Filled(3, compressible: false)),
            (40, Filled(4, compressible: true)),
        ];

        var writer = new PageBatchWriter(maxPages: pages.Length, compress);
        writer.Begin(PagePhase.FaultReply, faultPage: 17);
        foreach ((int page, byte[] content) in pages)
        {
            ulong hash = writer.Add(page, content);
            Assert.Equal(PageHash.Of(page, content), hash);
            Assert.Equal(page == 5, hash == 0);
        }

        Assert.True(writer.IsFull);
        Assert.Equal(1, writer.ZeroPages);

        byte[] payload = writer.Payload.ToArray();
        List<(int Page, bool Zero, byte[] Content)> got = ReadAll(payload, pageCount, out PagePhase phase, out uint fault);
        Assert.Equal(PagePhase.FaultReply, phase);
        Assert.Equal(17u, fault);
        Assert.Equal(pages.Select(p => p.Page), got.Select(g => g.Page));
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(pages[i].Content, got[i].Content);
            Assert.Equal(i == 0, got[i].Zero);
        }

        PageEncoding compressed = compress ? PageEncoding.Lz4 : PageEncoding.Raw;
        int compressedLength = compress ? -1 : PageSize; // LZ4 lengths vary: checked below
        Assert.Equal(
            new (uint, PageEncoding, int)[] { (5u, PageEncoding.Zero, 0), (0u, PageEncoding.Raw, PageSize), (63u, compressed, compressedLength), (17u, PageEncoding.Raw, PageSize), (40u, compressed, compressedLength) },
            Entries(payload).Select(e => (e.Page, e.Encoding, e.Encoding == PageEncoding.Lz4 ? -1 : e.Length)));
        if (compress)
        {
            Assert.True(payload.Length < PageBatchWriter.HeaderSize + (5 * PageBatchWriter.EntryHeaderSize) + (2 * PageSize) + 1024, "compressible pages shrank");
        }

        Assert.Equal((PagePhase.FaultReply, 17u), PageBatchReader.Header(payload));
    }

    [Fact]
    public void PageBatch_writer_reuse_starts_a_fresh_batch()
    {
        var writer = new PageBatchWriter(maxPages: 4);
        writer.Add(1, Filled(9, false));
        writer.Add(2, new byte[PageSize]);
        writer.Begin(PagePhase.Push);
        writer.Add(3, Filled(10, false));
        Assert.Equal(1, writer.Count);
        Assert.Equal(0, writer.ZeroPages);
        List<(int Page, bool Zero, byte[] Content)> got = ReadAll(writer.Payload.Span, 8, out PagePhase phase, out uint fault);
        Assert.Equal(PagePhase.Push, phase);
        Assert.Equal(PageBatchWriter.NoFault, fault);
        Assert.Equal(3, Assert.Single(got).Page);
    }

    // ---------------------------------------------------------------- Hello rejections

    [Fact]
    public void Hello_with_bad_magic_is_rejected()
    {
        byte[] b = SampleHello().Encode();
        b[0] ^= 0x20;
        Rejects(() => Hello.Decode(b), "bad magic");
    }

    [Fact]
    public void Hello_of_another_version_is_rejected()
    {
        Rejects(() => Hello.Decode((SampleHello() with { Version = 1 }).Encode()), "protocol version 1 is not supported");
        Rejects(() => Hello.Decode((SampleHello() with { Version = 2 }).Encode()), "protocol version 2 is not supported");
        Rejects(() => Hello.Decode((SampleHello() with { Version = (ushort)(Hello.ProtocolVersion + 1) }).Encode()), $"protocol version {Hello.ProtocolVersion + 1} is not supported");
        byte[] b = SampleHello().Encode();
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(VersionOffset), 0);
        Rejects(() => Hello.Decode(b), "protocol version 0");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    [InlineData(255)]
    public void Hello_with_an_unknown_role_is_rejected(byte role)
    {
        byte[] b = SampleHello().Encode();
        b[RoleOffset] = role;
        Rejects(() => Hello.Decode(b), $"unknown connection role {role}");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(200)]
    public void Hello_with_an_unknown_strategy_is_rejected(byte strategy)
        => Rejects(() => Hello.Decode((SampleHello() with { Strategy = (StrategyKind)strategy }).Encode()), $"unknown strategy {strategy}");

    [Theory]
    [InlineData(2)]
    [InlineData(255)]
    public void Hello_with_a_bad_adaptive_locality_flag_is_rejected(byte flag)
    {
        byte[] b = SampleHello().Encode();
        b[^12] = flag; // the flag, then the u32 page size, the u32 peer timeout, the resume flag and the two channel bytes
        Rejects(() => Hello.Decode(b), $"bad adaptive-locality flag {flag}");
    }

    [Fact]
    public void Hello_truncated_anywhere_is_rejected()
    {
        byte[] b = SampleHello().Encode();
        for (int n = 0; n < b.Length; n++)
        {
            byte[] prefix = b[..n];
            Rejects(() => Hello.Decode(prefix), "truncated");
        }
    }

    [Fact]
    public void Hello_with_trailing_bytes_is_rejected()
    {
        byte[] b = [.. SampleHello().Encode(), 0];
        Rejects(() => Hello.Decode(b), "1 unexpected trailing bytes");
    }

    [Fact]
    public void Hello_with_an_over_long_name_is_rejected()
    {
        Rejects(() => Hello.Decode(SampleHello(new string('n', Hello.MaxNameBytes + 1)).Encode()), "string of 65 bytes exceeds the 64 byte limit");
        // The limit is on UTF-8 bytes, not characters: 33 two-byte characters are 66 bytes.
        Rejects(() => Hello.Decode(SampleHello(new string('\u00fc', 33)).Encode()), "string of 66 bytes");
    }

    [Theory]
    [InlineData("")]
    [InlineData("../evil name")]
    [InlineData("-starts-with-a-dash")]
    [InlineData("vm-\u00fc\u00df")]
    [InlineData("new\nline")]
    public void Hello_with_a_name_outside_the_VM_name_rule_is_rejected(string name)
        => Rejects(() => Hello.Decode(SampleHello(name).Encode()), "is not a valid VM name");

    // ---------------------------------------------------------------- other message rejections

    [Fact]
    public void StateBundle_with_an_absent_map_of_the_wrong_size_is_rejected()
    {
        Rejects(() => StateBundle.Decode(new StateBundle([1, 2], [0, 0], 0, 0).Encode(), 130), "absent-page map has 2 words, this VM needs 3");
        Rejects(() => StateBundle.Decode(new StateBundle([1, 2], [0, 0, 0, 0], 0, 0).Encode(), 130), "absent-page map has 4 words, this VM needs 3");
        Rejects(() => StateBundle.Decode(new StateBundle([], [], 0, 0).Encode(), 1), "has 0 words, this VM needs 1");
    }

    [Theory]
    [InlineData(130, 2)]
    [InlineData(130, 63)]
    [InlineData(1, 1)]
    public void StateBundle_with_absent_bits_beyond_the_last_page_is_rejected(int pageCount, int bit)
    {
        var map = new ulong[(pageCount + 63) / 64];
        map[^1] = 1UL << bit;
        Rejects(() => StateBundle.Decode(new StateBundle([], map, 0, 0).Encode(), pageCount), "beyond the end of RAM");
        map[^1] = 1UL << ((pageCount - 1) & 63); // the last real page is fine
        Assert.Equal(map, StateBundle.Decode(new StateBundle([], map, 0, 0).Encode(), pageCount).AbsentPages);
    }

    [Fact]
    public void StateBundle_with_oversized_state_truncation_or_trailing_bytes_is_rejected()
    {
        // A CRC-64 trailer seals the bundle; a hostile peer can compute it, so the structure is
        // checked as well: Seal gives each malformed body a valid trailer.
        static byte[] Seal(byte[] body) => [.. body, .. BitConverter.GetBytes(System.IO.Hashing.Crc64.HashToUInt64(body))];

        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, StateCodec.MaxEncodedSize + 1);
        Rejects(() => StateBundle.Decode(Seal(b), 64), "exceeds the limit");

        byte[] valid = new StateBundle([9, 8, 7], [5], 1, 1).Encode();
        Assert.Equal([9, 8, 7], StateBundle.Decode(valid, 64).MachineState);
        byte[] body = valid[..^8];
        for (int n = 0; n < body.Length; n++)
        {
            byte[] prefix = body[..n];
            Rejects(() => StateBundle.Decode(Seal(prefix), 64), "truncated");
            Rejects(() => StateBundle.Decode(valid.AsSpan(0, n + 8), 64), "corrupt");
        }

        Rejects(() => StateBundle.Decode(Seal([.. body, 0, 0]), 64), "2 unexpected trailing bytes");
        for (int i = 0; i < valid.Length; i++)
        {
            byte[] flipped = [.. valid];
            flipped[i] ^= 0x10;
            Rejects(() => StateBundle.Decode(flipped, 64), "corrupt (CRC-64 mismatch)");
        }
    }

    [Theory]
    [InlineData(104u, 100u, (ushort)10, 105, "outside")] // range runs past the end of RAM
    [InlineData(105u, 105u, (ushort)1, 105, "outside")] // starts past the end
    [InlineData(2u, 1u, ushort.MaxValue, 100, "outside")] // count larger than RAM (no overflow)
    [InlineData(uint.MaxValue, uint.MaxValue, (ushort)1, 100, "outside")]
    [InlineData(10u, 10u, (ushort)0, 100, "outside")] // count 0
    [InlineData(9u, 10u, (ushort)4, 100, "outside")] // fault page before its range
    [InlineData(14u, 10u, (ushort)4, 100, "outside")] // fault page after its range
    public void PageRequest_outside_RAM_or_inconsistent_is_rejected(uint fault, uint first, ushort count, int pageCount, string expected)
    {
        var buffer = new byte[PageRequest.Size];
        new PageRequest(fault, first, count).Encode(buffer);
        Rejects(() => PageRequest.Decode(buffer, pageCount), expected);
    }

    [Fact]
    public void PageRequest_of_the_wrong_size_is_rejected()
    {
        var buffer = new byte[PageRequest.Size + 1];
        new PageRequest(1, 0, 4).Encode(buffer);
        Rejects(() => PageRequest.Decode(buffer, 100), "trailing");
        Rejects(() => PageRequest.Decode(buffer.AsSpan(0, PageRequest.Size - 1), 100), "truncated");
    }

    [Fact]
    public void Verified_with_oversized_metrics_is_rejected_before_reading_them()
    {
        var b = new byte[1 + 2 + 4];
        b[0] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(3), Verified.MaxMetricsBytes + 1);
        Rejects(() => Verified.Decode(b), $"metrics of {Verified.MaxMetricsBytes + 1} bytes exceed the limit");
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(3), uint.MaxValue);
        Rejects(() => Verified.Decode(b), "exceed the limit");
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(3), Verified.MaxMetricsBytes); // allowed, but absent
        Rejects(() => Verified.Decode(b), "truncated");
    }

    [Fact]
    public void Resumed_with_an_implausible_switchover_time_is_rejected()
    {
        Rejects(() => Resumed.Decode(new Resumed(3_600_001.0, 0, Guid.Empty).Encode()), "implausible");
        var b = new byte[32];
        BinaryPrimitives.WriteUInt64LittleEndian(b, ulong.MaxValue);
        Rejects(() => Resumed.Decode(b), "implausible");
        Rejects(() => Resumed.Decode(b.AsSpan(0, 31)), "truncated");
    }

    [Fact]
    public void Short_messages_reject_truncation_and_trailing_bytes()
    {
        byte[] complete = new Complete(1, 2).Encode();
        Rejects(() => Complete.Decode(complete.AsSpan(0, 11)), "truncated");
        Rejects(() => Complete.Decode([.. complete, 0]), "trailing");
        Rejects(() => ReasonMessage.Decode([5, 0, (byte)'a']), "truncated");
        Rejects(() => ReasonMessage.Decode([0, 0, 1]), "trailing");
        Rejects(() => HelloReply.Decode([1, 0xFF, 0xFF]), "string of 65535 bytes exceeds the 4000 byte limit");
    }

    // ---------------------------------------------------------------- page batch rejections

    private static byte[] Batch(PagePhase phase, uint fault, params (int Page, byte[] Content)[] pages)
    {
        var w = new PageBatchWriter(Math.Max(1, pages.Length), compress: true);
        w.Begin(phase, fault);
        foreach ((int page, byte[] content) in pages)
        {
            w.Add(page, content);
        }

        return w.Payload.ToArray();
    }

    /// <summary>A batch with one hand-made entry.</summary>
    private static byte[] RawEntryBatch(uint page, byte encoding, byte[] data, int? declaredLength = null)
    {
        var b = new byte[PageBatchWriter.HeaderSize + PageBatchWriter.EntryHeaderSize + data.Length];
        b[0] = (byte)PagePhase.Push;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), PageBatchWriter.NoFault);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), page);
        b[12] = encoding;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(13), (ushort)(declaredLength ?? data.Length));
        data.CopyTo(b, 15);
        return b;
    }

    private static void ReadRejects(byte[] payload, int pageCount, string expected)
        => Rejects(() => PageBatchReader.Read(payload, pageCount, new byte[PageSize], (_, _, _) => { }), expected);

    [Theory]
    [InlineData(64, 64)]
    [InlineData(64, 1000)]
    [InlineData(1, int.MaxValue)]
    public void PageBatch_with_a_page_outside_RAM_is_rejected(int pageCount, int page)
        => ReadRejects(Batch(PagePhase.Live, PageBatchWriter.NoFault, (0, Filled(1, false)), (page, Filled(2, false))), pageCount, $"page {(uint)page} is outside this VM's {pageCount} pages");

    [Fact]
    public void PageBatch_with_a_fault_page_outside_RAM_is_rejected()
    {
        ReadRejects(Batch(PagePhase.FaultReply, 64, (3, Filled(1, false))), 64, "fault page 64 is outside RAM");
        ReadRejects(Batch(PagePhase.FaultReply, uint.MaxValue - 1, (3, Filled(1, false))), 64, "outside RAM");
        Assert.Equal(63u, PageBatchReader.Read(Batch(PagePhase.FaultReply, 63, (3, Filled(1, false))), 64, new byte[PageSize], (_, _, _) => { }).FaultPage);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(255)]
    public void PageBatch_with_an_unknown_phase_is_rejected(byte phase)
    {
        byte[] b = Batch(PagePhase.Push, PageBatchWriter.NoFault, (1, Filled(1, false)));
        b[0] = phase;
        ReadRejects(b, 64, $"unknown page phase {phase}");
        Rejects(() => PageBatchReader.Header(b), $"unknown page phase {phase}");
    }

    [Fact]
    public void PageBatch_with_reserved_byte_or_too_many_pages_is_rejected()
    {
        byte[] b = Batch(PagePhase.Push, PageBatchWriter.NoFault, (1, Filled(1, false)));
        b[1] = 1;
        ReadRejects(b, 64, "reserved page batch byte is set");

        byte[] many = Batch(PagePhase.Push, PageBatchWriter.NoFault);
        BinaryPrimitives.WriteUInt16LittleEndian(many.AsSpan(2), 4097);
        ReadRejects(many, 1 << 20, "a batch of 4097 pages exceeds the limit");
    }

    [Theory]
    [InlineData(4)]
    [InlineData(200)]
    public void PageBatch_with_an_unknown_encoding_is_rejected(byte encoding)
        => ReadRejects(RawEntryBatch(7, encoding, new byte[16]), 64, $"page 7: page encoding {encoding} with 16 bytes is invalid");

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(PageSize - 1)]
    [InlineData(PageSize + 1)]
    public void PageBatch_with_a_raw_page_of_the_wrong_length_is_rejected(int length)
        => ReadRejects(RawEntryBatch(9, (byte)PageEncoding.Raw, new byte[length]), 64, $"page 9: page encoding 1 with {length} bytes is invalid");

    [Fact]
    public void PageBatch_with_a_zero_marker_carrying_bytes_is_rejected()
        => ReadRejects(RawEntryBatch(9, (byte)PageEncoding.Zero, [1]), 64, "page 9:");

    [Fact]
    public void PageBatch_with_LZ4_garbage_is_rejected()
    {
        ReadRejects(RawEntryBatch(4, (byte)PageEncoding.Lz4, [0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x02]), 64, "page 4:");
        ReadRejects(RawEntryBatch(4, (byte)PageEncoding.Lz4, [0x1F, 1, 2, 3]), 64, "does not decode to 4096 bytes"); // decodes short
        var noise = new byte[300];
        new Random(3).NextBytes(noise);
        ReadRejects(RawEntryBatch(4, (byte)PageEncoding.Lz4, noise), 64, "page 4:");

        // A valid LZ4 page with its length cut by one.
        byte[] lz4 = Batch(PagePhase.Push, PageBatchWriter.NoFault, (4, Filled(5, compressible: true)));
        Assert.Equal(PageEncoding.Lz4, Entries(lz4)[0].Encoding);
        byte[] cut = RawEntryBatch(4, (byte)PageEncoding.Lz4, lz4[15..^1]);
        ReadRejects(cut, 64, "page 4:");
    }

    [Fact]
    public void PageBatch_truncated_anywhere_or_with_trailing_bytes_is_rejected()
    {
        byte[] valid = Batch(PagePhase.Live, PageBatchWriter.NoFault, (1, new byte[PageSize]), (2, Filled(1, true)), (3, Filled(2, false)));
        for (int n = 0; n < valid.Length; n++)
        {
            ReadRejects(valid[..n], 64, "truncated");
        }

        ReadRejects([.. valid, 0xAB], 64, "1 unexpected trailing bytes");

        // The count promises more pages than the payload holds.
        byte[] moreThanThere = (byte[])valid.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(moreThanThere.AsSpan(2), 4);
        ReadRejects(moreThanThere, 64, "truncated");
        // ... or fewer: the rest is trailing garbage.
        byte[] fewer = (byte[])valid.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(fewer.AsSpan(2), 2);
        ReadRejects(fewer, 64, "unexpected trailing bytes");
        Rejects(() => PageBatchReader.Header(valid.AsSpan(0, 7)), "truncated");
    }

    // ---------------------------------------------------------------- properties: hostile input

    [Fact]
    public void Random_bytes_never_escape_the_decoders_as_anything_but_ProtocolException()
    {
        var scratch = new byte[PageSize];
        Gen.Select(Gen.Byte.Array[0, 400], Gen.Int[0, 300]).Sample((bytes, pageCount) =>
        {
            DecodesOrRejects(() => Hello.Decode(bytes));
            DecodesOrRejects(() => StateBundle.Decode(bytes, pageCount));
            DecodesOrRejects(() => PageBatchReader.Read(bytes, pageCount, scratch, (_, _, _) => { }));
            DecodesOrRejects(() => PageBatchReader.Header(bytes));
            DecodesOrRejects(() => PageRequest.Decode(bytes, pageCount));
            DecodesOrRejects(() => HelloReply.Decode(bytes));
            DecodesOrRejects(() => ReasonMessage.Decode(bytes));
            DecodesOrRejects(() => Verified.Decode(bytes));
            DecodesOrRejects(() => Resumed.Decode(bytes));
            DecodesOrRejects(() => Complete.Decode(bytes));
        }, iter: 20_000);
    }

    [Fact]
    public void Random_bytes_behind_a_valid_prefix_never_escape_as_anything_but_ProtocolException()
    {
        // Get past the magic/phase checks so the fuzzing reaches the later fields.
        byte[] helloPrefix = SampleHello().Encode()[..11];
        var scratch = new byte[PageSize];
        Gen.Select(Gen.Byte.Array[0, 300], Gen.Int[1, 300], Gen.Byte[1, 4], Gen.Byte[0, 4]).Sample((tail, pageCount, phase, encoding) =>
        {
            DecodesOrRejects(() => Hello.Decode([.. helloPrefix, .. tail]));

            byte[] batch = new byte[PageBatchWriter.HeaderSize + PageBatchWriter.EntryHeaderSize + tail.Length];
            batch[0] = phase;
            BinaryPrimitives.WriteUInt16LittleEndian(batch.AsSpan(2), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(batch.AsSpan(4), PageBatchWriter.NoFault);
            BinaryPrimitives.WriteUInt32LittleEndian(batch.AsSpan(8), (uint)(pageCount - 1));
            batch[12] = encoding;
            BinaryPrimitives.WriteUInt16LittleEndian(batch.AsSpan(13), (ushort)tail.Length);
            tail.CopyTo(batch, 15);
            DecodesOrRejects(() => PageBatchReader.Read(batch, pageCount, scratch, (_, _, _) => { }));

            byte[] bundle = new byte[5 + tail.Length];
            bundle[4] = 1; // empty state, then an absent map of random length and content
            tail.CopyTo(bundle, 5);
            DecodesOrRejects(() => StateBundle.Decode(bundle, pageCount));
        }, iter: 20_000);
    }

    [Fact]
    public void Mutated_Hello_decodes_or_is_rejected()
    {
        byte[] valid = SampleHello().Encode();
        Gen.Select(Flips, Gen.Int[0, valid.Length + 1]).Sample((flips, truncate) =>
            DecodesOrRejects(() => Hello.Decode(Mutate(valid, flips, truncate))), iter: 20_000);
    }

    [Fact]
    public void Mutated_StateBundle_decodes_or_is_rejected()
    {
        byte[] state = new byte[50];
        new Random(5).NextBytes(state);
        byte[] withMap = new StateBundle(state, [ulong.MaxValue, ulong.MaxValue, 3], 99, 7).Encode();
        byte[] withoutMap = new StateBundle(state, null, 99, 7).Encode();
        Gen.Select(Flips, Gen.Int[0, withMap.Length + 1], Gen.Bool).Sample((flips, truncate, map) =>
            DecodesOrRejects(() => StateBundle.Decode(Mutate(map ? withMap : withoutMap, flips, truncate), 130)), iter: 20_000);
    }

    [Fact]
    public void Mutated_PageBatch_decodes_or_is_rejected()
    {
        byte[] valid = Batch(PagePhase.FaultReply, 2, (1, new byte[PageSize]), (2, Filled(1, true)), (3, Filled(2, false)), (4, Filled(3, true)));
        var scratch = new byte[PageSize];
        // Flips anywhere in the batch, and flips confined to the headers (the first 8 + 7 bytes and
        // the second entry's), where almost every flip matters.
        Gen.Select(Flips, Gen.Int[0, valid.Length + 1], Gen.Bool).Sample((flips, truncate, headersOnly) =>
        {
            (int, byte)[] f = headersOnly ? flips.Select(x => (x.Item1 % 2 == 0 ? x.Item1 % 15 : 15 + (x.Item1 % 7), x.Item2)).ToArray() : flips;
            byte[] m = Mutate(valid, f, truncate);
            DecodesOrRejects(() => PageBatchReader.Read(m, 64, scratch, (page, _, content) =>
            {
                Assert.InRange(page, 0, 63);
                Assert.Equal(PageSize, content.Length);
            }));
        }, iter: 20_000);
    }

    // ---------------------------------------------------------------- frame channel

    private static byte[] Header(byte type, byte flags, ushort reserved, int length)
    {
        var h = new byte[FrameChannel.HeaderSize];
        h[0] = type;
        h[1] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(2), reserved);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(4), length);
        return h;
    }

    private static async Task<ProtocolException> ReceiveRejectsAsync(byte[] raw, bool closeAfter, string expected)
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var rx = new FrameChannel(b);
        await a.WriteAsync(raw);
        await a.FlushAsync();
        if (closeAfter)
        {
            await a.DisposeAsync();
        }

        ProtocolException e = await Assert.ThrowsAsync<ProtocolException>(async () => await rx.ReceiveAsync(Timeout));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        if (!closeAfter)
        {
            await a.DisposeAsync();
        }

        return e;
    }

    [Theory]
    [InlineData(0)]
    [InlineData((byte)MessageType.ChannelSync + 1)]
    [InlineData(255)]
    public Task FrameChannel_rejects_an_invalid_frame_type(byte type)
        => ReceiveRejectsAsync(Header(type, 0, 0, 0), closeAfter: false, $"invalid frame type {type}");

    [Theory]
    [InlineData(1, 0)]
    [InlineData(0, 1)]
    [InlineData(0, 0x8000)]
    public Task FrameChannel_rejects_reserved_header_bits(byte flags, ushort reserved)
        => ReceiveRejectsAsync(Header((byte)MessageType.Pages, flags, reserved, 0), closeAfter: false, "reserved frame header bits are set");

    [Theory]
    [InlineData(FrameChannel.MaxPayload + 1)]
    [InlineData(int.MaxValue)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public Task FrameChannel_rejects_an_oversized_length(int length)
        => ReceiveRejectsAsync(Header((byte)MessageType.Pages, 0, 0, length), closeAfter: false, $"frame length {length} exceeds");

    [Fact]
    public async Task FrameChannel_reports_a_connection_closed_mid_frame()
    {
        await ReceiveRejectsAsync([.. Header((byte)MessageType.Pages, 0, 0, 100), .. new byte[10]], closeAfter: true, "connection closed in the middle of a frame");
        await ReceiveRejectsAsync(Header((byte)MessageType.Pages, 0, 0, 100)[..5], closeAfter: true, "connection closed in the middle of a frame");
        await ReceiveRejectsAsync([], closeAfter: true, "connection closed by peer");

        // A whole frame, then the close: the frame is delivered, the close is reported next.
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var rx = new FrameChannel(b);
        byte[] frame = [.. Header((byte)MessageType.Complete, 0, 0, 3), 1, 2, 3];
        await a.WriteAsync(frame);
        await a.DisposeAsync();
        (MessageType type, ReadOnlyMemory<byte> payload) = await rx.ReceiveAsync(Timeout);
        Assert.Equal(MessageType.Complete, type);
        Assert.Equal(new byte[] { 1, 2, 3 }, payload.ToArray());
        ProtocolException e = await Assert.ThrowsAsync<ProtocolException>(async () => await rx.ReceiveAsync(Timeout));
        Assert.Equal("connection closed by peer", e.Message);
    }

    /// <summary>Records the size of every write, to see how frames are put on the stream.</summary>
    private sealed class RecordingStream(Stream inner) : DelegatingStream(inner)
    {
        public List<int> Writes { get; } = [];

        protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer)
        {
            Writes.Add(buffer.Length);
            return buffer;
        }
    }

    [Fact]
    public async Task FrameChannel_sends_small_frames_in_one_write_and_large_ones_as_header_then_payload()
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        var recording = new RecordingStream(a);
        await using var tx = new FrameChannel(recording);
        await using var rx = new FrameChannel(b);
        CancellationToken ct = Timeout;

        byte[] small = Enumerable.Range(0, 4096 - FrameChannel.HeaderSize).Select(i => (byte)i).ToArray(); // the largest one-write frame
        byte[] large = new byte[small.Length + 1];
        byte[] huge = new byte[3 << 20];
        new Random(11).NextBytes(large);
        new Random(12).NextBytes(huge);

        await tx.SendAsync(MessageType.PageRequest, small, ct);
        Assert.Equal(new[] { FrameChannel.HeaderSize + small.Length }, recording.Writes);
        await tx.SendAsync(MessageType.Pages, large, ct);
        Assert.Equal(new[] { FrameChannel.HeaderSize, large.Length }, recording.Writes.Skip(1));
        await tx.SendAsync(MessageType.Welcome, ReadOnlyMemory<byte>.Empty, ct);
        Assert.Equal(FrameChannel.HeaderSize, recording.Writes[^1]);

        // 3 MiB stays under the pipe's pause threshold, so the send completes without a reader.
        await tx.SendAsync(MessageType.StateBundle, huge, ct);

        (MessageType t1, ReadOnlyMemory<byte> p1) = await rx.ReceiveAsync(ct);
        Assert.Equal(MessageType.PageRequest, t1);
        Assert.Equal(small, p1.ToArray());
        (MessageType t2, ReadOnlyMemory<byte> p2) = await rx.ReceiveAsync(ct);
        Assert.Equal(MessageType.Pages, t2);
        Assert.Equal(large, p2.ToArray());
        (MessageType t3, ReadOnlyMemory<byte> p3) = await rx.ReceiveAsync(ct);
        Assert.Equal(MessageType.Welcome, t3);
        Assert.Equal(0, p3.Length);
        (MessageType t4, ReadOnlyMemory<byte> p4) = await rx.ReceiveAsync(ct);
        Assert.Equal(MessageType.StateBundle, t4);
        Assert.True(huge.AsSpan().SequenceEqual(p4.Span));

        long expected = (4 * FrameChannel.HeaderSize) + small.Length + large.Length + huge.Length;
        Assert.Equal(expected, tx.BytesSent);
        Assert.Equal(expected, rx.BytesReceived);
        Assert.Equal(0, tx.BytesReceived);
        Assert.Equal(0, rx.BytesSent);
    }

    [Fact]
    public async Task FrameChannel_carries_a_frame_of_the_maximum_size_and_refuses_to_send_a_larger_one()
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var tx = new FrameChannel(a);
        await using var rx = new FrameChannel(b);
        CancellationToken ct = Timeout;
        byte[] max = new byte[FrameChannel.MaxPayload];
        max[0] = 1;
        max[^1] = 2;

        // Larger than the pipe buffers: the receiver must run concurrently.
        Task send = tx.SendAsync(MessageType.Pages, max, ct).AsTask();
        (MessageType type, ReadOnlyMemory<byte> payload) = await rx.ReceiveAsync(ct);
        await send;
        Assert.Equal(MessageType.Pages, type);
        Assert.Equal(FrameChannel.MaxPayload, payload.Length);
        Assert.Equal(1, payload.Span[0]);
        Assert.Equal(2, payload.Span[^1]);
        Assert.Equal(FrameChannel.HeaderSize + FrameChannel.MaxPayload, rx.BytesReceived);

        await Assert.ThrowsAsync<ArgumentException>(async () => await tx.SendAsync(MessageType.Pages, new byte[FrameChannel.MaxPayload + 1], ct));
        Assert.Equal(FrameChannel.HeaderSize + FrameChannel.MaxPayload, tx.BytesSent);
    }

    [Fact]
    public async Task FrameChannel_Expect_turns_the_peers_failure_into_its_reason_and_other_frames_into_protocol_errors()
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var tx = new FrameChannel(a);
        await using var rx = new FrameChannel(b);
        CancellationToken ct = Timeout;

        await tx.SendAsync(MessageType.Failed, ReasonMessage.Encode("disk on fire"), ct);
        MigrationPeerException failed = await Assert.ThrowsAsync<MigrationPeerException>(async () => await rx.ExpectAsync(MessageType.Verified, ct));
        Assert.Equal("peer failed: disk on fire", failed.Message);

        await tx.SendAsync(MessageType.Refused, new HelloReply(false, "wrong migration token").Encode(), ct);
        MigrationPeerException refused = await Assert.ThrowsAsync<MigrationPeerException>(async () => await rx.ExpectAsync(MessageType.Welcome, ct));
        Assert.Equal("refused: wrong migration token", refused.Message);

        await tx.SendAsync(MessageType.Cancel, new byte[] { 0xFF }, ct); // an unreadable reason is still a cancel
        MigrationPeerException cancelled = await Assert.ThrowsAsync<MigrationPeerException>(async () => await rx.ExpectAsync(MessageType.Pages, ct));
        Assert.Equal("peer cancelled: (unreadable reason)", cancelled.Message);

        await tx.SendAsync(MessageType.Pages, ReadOnlyMemory<byte>.Empty, ct);
        ProtocolException unexpected = await Assert.ThrowsAsync<ProtocolException>(async () => await rx.ExpectAsync(MessageType.StateBundle, ct));
        Assert.Equal("unexpected Pages frame (expected StateBundle)", unexpected.Message);

        await tx.SendAsync(MessageType.Complete, new Complete(5, 6).Encode(), ct);
        Assert.Equal(new Complete(5, 6), Complete.Decode((await rx.ExpectAsync(MessageType.Complete, ct)).Span));
    }

    // ---------------------------------------------------------------- incoming slot

    private static readonly MachineConfig SlotConfig = new() { MemorySize = 64UL << 20, Icount = true, IdleSleep = false };

    private static (IncomingSlot Slot, Hello Hello) Slot()
    {
        IncomingSlot slot = IncomingSlot.Create("web-1", SlotConfig, TimeSpan.FromMinutes(5));
        Hello hello = SampleHello("web-1") with { Token = (byte[])slot.Token.Clone(), Machine = SlotConfig with { } };
        return (slot, hello);
    }

    [Fact]
    public void IncomingSlot_accepts_a_matching_Hello()
    {
        (IncomingSlot slot, Hello hello) = Slot();
        Assert.Equal(Hello.TokenLength, slot.Token.Length);
        Assert.Null(slot.Validate(hello));
        Assert.Null(slot.Validate(hello with { LocalityPages = 1 }));
        Assert.Null(slot.Validate(hello with { LocalityPages = 1024 }));
        Assert.Null(slot.Validate(hello with { Machine = SlotConfig with { IdleSleep = true } })); // not part of the contract
        Assert.Null(slot.Validate(Hello.Decode(hello.Encode()))); // as it arrives off the wire
        Assert.NotEqual(slot.Token, IncomingSlot.Create("web-1", SlotConfig, TimeSpan.FromMinutes(5)).Token);
    }

    [Fact]
    public void IncomingSlot_refuses_a_wrong_token()
    {
        (IncomingSlot slot, Hello hello) = Slot();
        byte[] wrong = (byte[])slot.Token.Clone();
        wrong[^1] ^= 1;
        Assert.Equal("wrong migration token", slot.Validate(hello with { Token = wrong }));
        Assert.Equal("wrong migration token", slot.Validate(hello with { Token = slot.Token[..31] }));
        Assert.Equal("wrong migration token", slot.Validate(hello with { Token = [] }));
    }

    [Fact]
    public void IncomingSlot_refuses_after_it_expires()
    {
        (IncomingSlot slot, Hello hello) = Slot();
        IncomingSlot expired = slot with { Expires = DateTimeOffset.UtcNow - TimeSpan.FromSeconds(1) };
        Assert.Contains("expired", expired.Validate(hello), StringComparison.Ordinal);
    }

    [Fact]
    public void IncomingSlot_refuses_another_VM()
    {
        (IncomingSlot slot, Hello hello) = Slot();
        string? reason = slot.Validate(hello with { VmName = "web-2" });
        Assert.Equal("this destination expects VM 'web-1', not 'web-2'", reason);
        Assert.NotNull(slot.Validate(hello with { VmName = "WEB-1" })); // names are exact
    }

    [Fact]
    public void IncomingSlot_refuses_a_memory_or_clock_mismatch()
    {
        (IncomingSlot slot, Hello hello) = Slot();
        string? memory = slot.Validate(hello with { Machine = SlotConfig with { MemorySize = 128UL << 20 } });
        Assert.NotNull(memory);
        Assert.Contains("memory size mismatch", memory, StringComparison.Ordinal);
        Assert.Contains("128 MiB", memory, StringComparison.Ordinal);
        Assert.Contains("64 MiB", memory, StringComparison.Ordinal);

        string? clock = slot.Validate(hello with { Machine = SlotConfig with { Icount = false } });
        Assert.NotNull(clock);
        Assert.Contains("clock mode mismatch", clock, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(8192u)]
    [InlineData(4095u)]
    public void IncomingSlot_refuses_another_page_size(uint pageSize)
    {
        (IncomingSlot slot, Hello hello) = Slot();
        Assert.Equal($"page size {pageSize} is not supported", slot.Validate(hello with { PageSize = pageSize }));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1025)]
    [InlineData(ushort.MaxValue)]
    public void IncomingSlot_refuses_a_locality_window_out_of_range(int locality)
    {
        (IncomingSlot slot, Hello hello) = Slot();
        string? reason = slot.Validate(hello with { LocalityPages = (ushort)locality });
        Assert.NotNull(reason);
        Assert.Contains("out of range (1..1024)", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void IncomingSlot_Matches_compares_the_whole_token()
    {
        (IncomingSlot slot, _) = Slot();
        Assert.True(slot.Matches((byte[])slot.Token.Clone()));
        for (int i = 0; i < slot.Token.Length; i++)
        {
            byte[] t = (byte[])slot.Token.Clone();
            t[i] ^= 0x80;
            Assert.False(slot.Matches(t));
        }

        Assert.False(slot.Matches([.. slot.Token, 0]));
        Assert.False(slot.Matches(slot.Token[..^1]));
        Assert.False(slot.Matches([]));
    }
}
