using Ferry.Machine.Devices;

namespace Ferry.Machine.Tests.Devices;

/// <summary>Records what a sink's inputs were last driven to.</summary>
internal sealed class Pins : IInterruptSink
{
    public bool[] Level { get; } = new bool[128];

    public int Calls { get; private set; }

    public void SetInput(int input, bool level)
    {
        Level[input] = level;
        Calls++;
    }
}

public sealed class PlicTests
{
    private const int Meip = 11, Seip = 9;
    private const ulong EnableM = 0x2000, EnableS = 0x2080, ThresholdM = 0x20_0000, ClaimM = 0x20_0004, ThresholdS = 0x20_1000, ClaimS = 0x20_1004;

    private readonly Pins _hart = new();
    private readonly Plic _plic;

    public PlicTests() => _plic = new Plic(new InterruptLine(_hart, Meip), new InterruptLine(_hart, Seip));

    private uint Read(ulong offset)
    {
        Assert.True(_plic.Read(offset, 4, out ulong v));
        return (uint)v;
    }

    private void Write(ulong offset, uint value) => Assert.True(_plic.Write(offset, 4, value));

    private void Enable(ulong context, params int[] sources)
    {
        var words = new uint[Plic.BitmapWords];
        foreach (int s in sources)
        {
            words[s >> 5] |= 1u << (s & 31);
        }

        for (int w = 0; w < words.Length; w++)
        {
            Write(context + (4 * (ulong)w), words[w]);
        }
    }

    [Fact]
    public void Claim_TakesTheHighestPriority_LowestSourceAmongEquals_ThenNothing()
    {
        (int Source, uint Priority)[] sources = [(3, 2), (5, 2), (7, 5), (40, 5), (95, 1), (64, 0)];
        foreach ((int s, uint p) in sources)
        {
            Write(4 * (ulong)s, p);
            _plic.SetInput(s, true);
        }

        Enable(EnableS, [.. sources.Select(s => s.Source)]);
        Write(ThresholdS, 0); // an event after the enable write: outputs are recomputed
        Assert.True(_hart.Level[Seip]);
        Assert.False(_hart.Level[Meip]);
        Assert.Equal([7u, 40u, 3u, 5u, 95u, 0u], Enumerable.Range(0, 6).Select(_ => Read(ClaimS)));
        Assert.False(_hart.Level[Seip]);
        Assert.True(_plic.IsPending(64)); // priority 0 never interrupts, stays pending
    }

    [Fact]
    public void Threshold_MasksPrioritiesAtOrBelowIt()
    {
        Write(4 * 10, 3);
        Enable(EnableM, 10);
        Write(ThresholdM, 3);
        _plic.SetInput(10, true);
        Assert.False(_hart.Level[Meip]);
        Assert.Equal(0u, Read(ClaimM));
        Write(ThresholdM, 2);
        Assert.True(_hart.Level[Meip]);
        Assert.Equal(10u, Read(ClaimM));
    }

    [Fact]
    public void ClaimedSource_IsNotClaimableUntilCompleted_AndARaiseMeanwhileIsKept()
    {
        Write(4 * 10, 1);
        Enable(EnableS, 10);
        _plic.SetInput(10, true);
        Assert.Equal(10u, Read(ClaimS));
        Assert.False(_plic.IsPending(10));
        _plic.SetInput(10, true); // the device raises again while claimed
        Assert.True(_plic.IsPending(10));
        Assert.False(_hart.Level[Seip]);
        Assert.Equal(0u, Read(ClaimS));
        Write(ClaimS, 10);
        Assert.True(_hart.Level[Seip]);
        Assert.Equal(10u, Read(ClaimS));
        Write(ClaimS, 10);
        Assert.False(_hart.Level[Seip]); // no raise since the claim: nothing pending
    }

    [Fact]
    public void LoweringAnInput_LeavesItPending_AsQemu()
    {
        Write(4 * 10, 1);
        Enable(EnableS, 10);
        _plic.SetInput(10, true);
        _plic.SetInput(10, false);
        Assert.True(_plic.IsPending(10));
        Assert.True(_hart.Level[Seip]);
        Assert.Equal(10u, Read(ClaimS));
    }

    [Fact]
    public void Completion_IgnoresTheContextsEnables_AndOutOfRangeSources()
    {
        Write(4 * 10, 1);
        Enable(EnableM, 10);
        _plic.SetInput(10, true);
        Assert.Equal(10u, Read(ClaimM));
        _plic.SetInput(10, true);
        Write(ClaimM, 96);
        Write(ClaimM, 0xFFFF_FFFF);
        Assert.False(_hart.Level[Meip]);
        Write(ClaimS, 10); // context 1 has no enables at all
        Assert.True(_hart.Level[Meip]);
    }

    [Fact]
    public void EnableWrite_ShowsAtTheNextEvent_AsQemu()
    {
        Write(4 * 10, 1);
        _plic.SetInput(10, true);
        Enable(EnableS, 10);
        Assert.False(_hart.Level[Seip]);
        Assert.Equal(1u, Read(4 * 10)); // a read is no event
        Assert.False(_hart.Level[Seip]);
        Write(4 * 10, 1);
        Assert.True(_hart.Level[Seip]);
    }

    [Fact]
    public void Registers_AreWarl_AndOnlyAligned32BitAccessesAreValid()
    {
        Write(4 * 10, 0xF);
        Assert.Equal(7u, Read(4 * 10));
        Write(4 * 10, 9);
        Assert.Equal(1u, Read(4 * 10));
        Write(ThresholdS, 12);
        Assert.Equal(4u, Read(ThresholdS));
        Write(EnableS + 8, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_FFFFu, Read(EnableS + 8));
        Write(EnableS + 12, 0xFFFF_FFFF); // beyond the 3 words: ignored
        Assert.Equal(0u, Read(EnableS + 12));
        Write(0x1000, 0xFFFF_FFFF); // pending is read-only
        Assert.Equal(0u, Read(0x1000));
        Assert.Equal(0u, Read(4 * 96));
        Assert.Equal(0u, Read(0x20_2000)); // no context 2

        Assert.False(_plic.Read(4 * 10, 8, out _));
        Assert.False(_plic.Read(4 * 10, 1, out _));
        Assert.False(_plic.Write(4 * 10, 2, 1));
        Assert.False(_plic.Read(4 * 10 + 2, 4, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => _plic.SetInput(0, true));
        Assert.Throws<ArgumentOutOfRangeException>(() => _plic.SetInput(96, true));
    }

    [Fact]
    public void State_RoundTrips_AndBadStateIsRefused()
    {
        Write(4 * 10, 3);
        Write(4 * 33, 2);
        Enable(EnableS, 10, 33);
        Enable(EnableM, 33);
        Write(ThresholdM, 1);
        _plic.SetInput(10, true);
        _plic.SetInput(33, true);
        Assert.Equal(10u, Read(ClaimS));
        PlicState saved = _plic.SaveState();

        var pins = new Pins();
        var copy = new Plic(new InterruptLine(pins, Meip), new InterruptLine(pins, Seip));
        copy.RestoreState(saved);
        Assert.Equal(_hart.Level[Meip], pins.Level[Meip]);
        Assert.Equal(_hart.Level[Seip], pins.Level[Seip]);
        Assert.Equal(StateCodecBytes(saved), StateCodecBytes(copy.SaveState()));
        Assert.True(copy.Read(ClaimM, 4, out ulong claimed));
        Assert.Equal(33UL, claimed);

        Assert.Throws<InvalidDataException>(() => copy.RestoreState(saved with { Threshold = [8, 0] }));
        Assert.Throws<InvalidDataException>(() => copy.RestoreState(saved with { Pending = [1, 0, 0] }));
        Assert.Throws<InvalidDataException>(() => copy.RestoreState(saved with { Enable = [0] }));
    }

    private static string StateCodecBytes(PlicState s) =>
        string.Join(",", new[] { s.Priority, s.Pending, s.Claimed, s.Enable, s.Threshold }.Select(a => string.Join(" ", a)));
}
