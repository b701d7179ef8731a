using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Several connections for the bulk pages (<c>--channels N</c>, as QEMU's multifd): lossless
/// migrations over 2 and 4 channels, the ordering of a page's copies across channels that
/// deliver out of order, and the refusal of bulk connections that do not belong.
/// </summary>
public class MultiChannelTests
{
    private const string KvStore = "table_mib=24,report_every=20000";

    public static TheoryData<StrategyKind, int> Lossless()
    {
        var data = new TheoryData<StrategyKind, int>();
        foreach (StrategyKind s in new[] { StrategyKind.PreCopy, StrategyKind.PostCopy, StrategyKind.Hybrid })
        {
            data.Add(s, 2);
            data.Add(s, 4);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Lossless))]
    public async Task Striped_migration_reaches_the_unmigrated_digest_and_console(StrategyKind strategy, int channels)
    {
        const ulong memory = 64UL << 20;
        const ulong stopAt = 80_000_000;
        (string digest, byte[] console) = Harness.Reference("kvstore", KvStore, memory, stopAt);
        var options = new MigrationOptions
        {
            Strategy = strategy,
            DowntimeLimit = TimeSpan.FromMilliseconds(50),
            MaxRounds = 5,
            Channels = channels,
            // Pages before and after the switchover both cross the bulk channels. A live pass is
            // striped by page (each lane its own chunks), while the pages pushed after the resume
            // go to whichever lane is free: without the pass a loaded machine let two of a
            // hybrid's four lanes carry one batch each (CI), and the check that every lane
            // carried pages failed though nothing was wrong.
            LivePasses = strategy is StrategyKind.PostCopy or StrategyKind.Hybrid ? 1 : 0,
        };
        var written = new ConcurrentBag<CountingStream>();
        LocalVm source = await Harness.StartAsync("kvstore", KvStore, memory, 20_000_000, stopAt);
        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source, options, new LocalMigrationHooks
        {
            Intercept = (role, s) =>
            {
                var counting = new CountingStream(s, role);
                written.Add(counting);
                return counting;
            },
        });
        using (source)
        using (destination)
        {
            Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
            Assert.Equal(channels, report.Options.Channels);

            // N bulk connections, each of which carried pages; the main connection carried none of them.
            CountingStream[] bulk = [.. written.Where(c => c.Role == ConnectionRole.Bulk)];
            Assert.Equal(channels, bulk.Length);
            long pageBytes = report.Bytes.Live + report.Bytes.Pause + report.Bytes.Push;
            Assert.All(bulk, c => Assert.True(c.Written > 256 << 10, $"a bulk connection carried {c.Written} of {pageBytes} page bytes")); // pages, not just its Hello and sync
            Assert.True(bulk.Sum(c => c.Written) > pageBytes * 9 / 10, $"the bulk connections carried {bulk.Sum(c => c.Written)} of {pageBytes} page bytes");
            long main = written.Where(c => c.Role == ConnectionRole.Main).Sum(c => c.Written);
            Assert.True(main < pageBytes / 10, $"the main connection carried {main} bytes of {pageBytes} page bytes");

            RunOutcome outcome = await destination!.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(RunOutcome.InstructionLimit, outcome);
            Assert.Equal(digest, StateDigest.Compute(destination.Machine));
            (long offset, byte[] tail) = destination.Machine.Console.Read(0);
            byte[] head = source.Machine.Console.Read(0).Bytes[..(int)offset];
            Assert.Equal(console, head.Concat(tail).ToArray());
        }
    }

    [Fact]
    public void A_page_always_takes_the_same_lane_and_every_lane_gets_pages()
    {
        for (int lanes = 2; lanes <= Hello.MaxChannels; lanes++)
        {
            var count = new int[lanes];
            for (int page = 0; page < 65536; page++)
            {
                int lane = StripedSender.LaneOf(page, lanes);
                Assert.Equal(lane, StripedSender.LaneOf(page, lanes));
                Assert.Equal(lane, StripedSender.LaneOf((page >> StripedSender.ChunkShift) << StripedSender.ChunkShift, lanes)); // a chunk shares its lane
                count[lane]++;
            }

            Assert.All(count, c => Assert.InRange(c, 65536 / lanes / 2, 65536 * 2 / lanes));
        }
    }

    public static TheoryData<string, string> Refusals() => new()
    {
        { "duplicate", "bulk channel 0 of this migration is already open" },
        { "extra", "announces 3 channels; this migration has 2" },
        { "unknown", "no migration is waiting for this bulk connection" },
    };

    /// <summary>A source (buggy or hostile) whose second bulk connection does not belong: refused, and the VM stays at the source, running.</summary>
    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_bulk_connection_that_does_not_belong_is_refused_and_the_vm_stays(string kind, string reason)
    {
        var refused = new ConcurrentBag<string>();
        int bulk = 0;
        LocalVm source = await Harness.StartAsync("kvstore", KvStore, 64UL << 20, 5_000_000, ulong.MaxValue);
        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = StrategyKind.Hybrid, Channels = 2 }, new LocalMigrationHooks
            {
                Intercept = (role, s) => role == ConnectionRole.Bulk && Interlocked.Increment(ref bulk) == 2 ? new HelloRewriter(s, kind) : s,
                OnRefused = refused.Add,
            });
        using (source)
        {
            Assert.True(destination is null || destination.AbortReason is not null, "the destination discarded its copy");
            Assert.Equal(MigrationOutcome.Failed, report.Outcome);
            Assert.Equal(VmLocation.Source, report.VmLocation);
            Assert.Contains(reason, report.Error);
            Assert.Contains(refused, r => r.Contains(reason, StringComparison.Ordinal));
            ulong before = source.Machine.Hart.InstructionsRetired;
            await Task.Delay(100);
            Assert.True(source.Runner.IsRunning && source.Machine.Hart.InstructionsRetired > before, "the VM runs on at the source");
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(9)]
    public void Channels_outside_1_to_8_are_refused(int channels)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => new MigrationOptions { Channels = channels }.Validate());
        Assert.Contains("channels must be 1..8", e.Message);
    }

    [Fact]
    public void Hello_carries_the_channels_and_rejects_inconsistent_ones()
    {
        Hello hello = Sample(ConnectionRole.Bulk, 4, 3);
        Hello back = Hello.Decode(hello.Encode());
        Assert.Equal((byte)4, back.Channels);
        Assert.Equal((byte)3, back.ChannelIndex);
        Assert.Equal(ConnectionRole.Bulk, back.Role);

        Assert.Contains("outside 1..8", Assert.Throws<ProtocolException>(() => Hello.Decode(Sample(ConnectionRole.Main, 9, 0).Encode())).Message);
        Assert.Contains("outside 1..8", Assert.Throws<ProtocolException>(() => Hello.Decode(Sample(ConnectionRole.Main, 0, 0).Encode())).Message);
        Assert.Contains("index 4 is outside this migration's 4", Assert.Throws<ProtocolException>(() => Hello.Decode(Sample(ConnectionRole.Bulk, 4, 4).Encode())).Message);
        Assert.Contains("outside this migration's 1", Assert.Throws<ProtocolException>(() => Hello.Decode(Sample(ConnectionRole.Bulk, 1, 0).Encode())).Message);
        Assert.Contains("not a bulk channel", Assert.Throws<ProtocolException>(() => Hello.Decode(Sample(ConnectionRole.Fault, 2, 1).Encode())).Message);
    }

    private static Hello Sample(ConnectionRole role, byte channels, byte index) => new()
    {
        Role = role,
        Token = new byte[Hello.TokenLength],
        VmName = "vm1",
        Machine = new MachineConfig { MemorySize = 64UL << 20 },
        Strategy = StrategyKind.Hybrid,
        Channels = channels,
        ChannelIndex = index,
    };

    /// <summary>Counts what the source writes on one connection.</summary>
    private sealed class CountingStream(Stream inner, ConnectionRole role) : DelegatingStream(inner)
    {
        private long _written;

        public ConnectionRole Role => role;

        public long Written => Interlocked.Read(ref _written);

        protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer)
        {
            Interlocked.Add(ref _written, buffer.Length);
            return buffer;
        }
    }

    /// <summary>Rewrites the Hello of a bulk connection (its first frame): a duplicate index, an extra channel, or an unknown token.</summary>
    private sealed class HelloRewriter(Stream inner, string kind) : DelegatingStream(inner)
    {
        private int _frames;

        protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer)
        {
            if (Interlocked.Increment(ref _frames) != 1)
            {
                return buffer;
            }

            byte[] frame = buffer.ToArray();
            int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(frame.AsSpan(4));
            Assert.Equal(FrameChannel.HeaderSize + length, frame.Length); // the Hello in one write
            Span<byte> hello = frame.AsSpan(FrameChannel.HeaderSize, length);
            switch (kind)
            {
                case "duplicate":
                    hello[^1] = 0; // index 0 again
                    break;
                case "extra":
                    hello[^2] = 3; // a third channel
                    hello[^1] = 2;
                    break;
                default:
                    hello[8 + 2 + 1] ^= 0xFF; // the token's first byte
                    break;
            }

            return frame;
        }
    }

    /// <summary>
    /// Delivers what the source writes <paramref name="delay"/> late, in order (a slow path), while
    /// the writer goes on at once: the frames of one channel fall behind those of the others.
    /// </summary>
    internal sealed class DelayedStream : DelegatingStream
    {
        private readonly System.Threading.Channels.Channel<(long Due, byte[] Data)> _queue = System.Threading.Channels.Channel.CreateUnbounded<(long, byte[])>();
        private readonly TimeSpan _delay;
        private readonly Task _pump;
        private long _deliveredLate;

        public DelayedStream(Stream inner, TimeSpan delay)
            : base(inner)
        {
            _delay = delay;
            _pump = Task.Run(PumpAsync);
        }

        /// <summary>Writes delivered (each at least the delay late).</summary>
        public long DeliveredLate => Interlocked.Read(ref _deliveredLate);

        protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer) => buffer;

        public override void Write(byte[] buffer, int offset, int count) => Enqueue(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer) => Enqueue(buffer);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Enqueue(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        private void Enqueue(ReadOnlySpan<byte> data)
            => _queue.Writer.TryWrite((Stopwatch.GetTimestamp() + (long)(_delay.TotalSeconds * Stopwatch.Frequency), data.ToArray()));

        private async Task PumpAsync()
        {
            try
            {
                await foreach ((long due, byte[] data) in _queue.Reader.ReadAllAsync())
                {
                    long wait = due - Stopwatch.GetTimestamp();
                    if (wait > 0)
                    {
                        await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
                    }

                    Interlocked.Increment(ref _deliveredLate);
                    await Inner.WriteAsync(data);
                    await Inner.FlushAsync();
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
            {
                // The connection closed: what was still queued is lost, as on a cut link.
            }
        }

        protected override void Dispose(bool disposing)
        {
            _queue.Writer.TryComplete();
            base.Dispose(disposing);
        }
    }
}

/// <summary>
/// The ordering of a page's copies across channels that deliver out of order. It needs the guest
/// to dirty pages between rounds at its own speed: it runs alone, after the rest of the suite
/// (beside it, a starved guest let pre-copy converge after its first round, with nothing re-sent).
/// </summary>
[Collection(nameof(TimingSensitive))]
public class MultiChannelOrderingTests
{
    private const string KvStore = "table_mib=24,report_every=20000";

    /// <summary>
    /// Pre-copy rounds re-send the pages the guest dirtied; bulk connection 0 delivers everything
    /// 300 ms late, so round r's pages on it arrive after round r+1's on the others. Every page must
    /// end with its newest content (the digest), and the rounds must really have re-sent pages.
    /// Delta pages are on: a delta applied to an older copy would corrupt the page, not just age it.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_page_resent_across_rounds_ends_with_its_newest_content_when_channels_deliver_out_of_order(bool delta)
    {
        const ulong memory = 64UL << 20;
        // Far enough that the guest still dirties pages when the rounds end: translated, kvstore
        // retires over a billion instructions a second, and at 1.5 billion CI saw it halt during
        // the first round, which left nothing to re-send.
        const ulong stopAt = 5_000_000_000;
        (string digest, _) = Harness.Reference("kvstore", KvStore, memory, stopAt);
        var options = new MigrationOptions
        {
            Strategy = StrategyKind.PreCopy,
            DowntimeLimit = TimeSpan.FromMilliseconds(5), // short rounds, several of them: each well inside the delay
            MaxRounds = 8,
            Channels = 2,
            BandwidthBitsPerSecond = 1_000_000_000,
            DeltaCacheBytes = delta ? MigrationOptions.DefaultDeltaCacheBytes : 0,
        };
        var delayed = new List<MultiChannelTests.DelayedStream>();
        LocalVm source = await Harness.StartAsync("kvstore", KvStore, memory, 20_000_000, stopAt);
        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source, options, new LocalMigrationHooks
        {
            Intercept = (role, s) =>
            {
                if (role != ConnectionRole.Bulk || delayed.Count > 0)
                {
                    return s;
                }

                var late = new MultiChannelTests.DelayedStream(s, TimeSpan.FromMilliseconds(300));
                delayed.Add(late);
                return late;
            },
        });
        using (source)
        using (destination)
        {
            Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
            Assert.True(report.PrecopyRounds >= 2 && report.Pages.Resent > 0,
                $"{report.PrecopyRounds} rounds re-sent {report.Pages.Resent} pages; paused at instruction {report.Guest.InstructionsAtPause:N0} of {stopAt:N0}; rounds: "
                + string.Join("; ", report.Rounds.Select(r => $"{r.Round}: {r.Pages} pages in {r.DurationMs:0} ms, {r.DirtiedPages} dirtied")));
            Assert.True(delayed.Single().DeliveredLate > 0, "the delayed channel delivered its frames late");
            RunOutcome outcome = await destination!.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(120));
            Assert.Equal(RunOutcome.InstructionLimit, outcome);
            Assert.Equal(digest, StateDigest.Compute(destination.Machine));
        }
    }
}
