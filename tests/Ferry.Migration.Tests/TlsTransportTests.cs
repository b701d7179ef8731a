using System.Net.Security;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>Migrations over the TLS decorator of the transport, and the handshakes it refuses.</summary>
public class TlsTransportTests
{
    private const ulong Memory = 32UL << 20;

    [Theory]
    [InlineData(StrategyKind.PreCopy, false, 1)]
    [InlineData(StrategyKind.PostCopy, false, 1)]
    [InlineData(StrategyKind.Hybrid, false, 1)]
    [InlineData(StrategyKind.PostCopy, true, 1)]
    [InlineData(StrategyKind.Hybrid, true, 1)]
    [InlineData(StrategyKind.PreCopy, true, 3)] // three bulk connections, TLS each
    public async Task A_migration_over_tls_reaches_the_unmigrated_digest(StrategyKind strategy, bool tcp, int channels)
    {
        const ulong stopAt = 60_000_000;
        (string digest, _) = Harness.Reference("verify", "size_mib=8", Memory, stopAt);
        using var pki = new TestPki();
        var sniffer = new SniffingTransport(tcp ? new TcpTransport() : new InMemoryTransport());
        using LocalVm source = await Harness.StartAsync("verify", "size_mib=8", Memory, 20_000_000, stopAt);
        (MigrationReport r, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = strategy, DowntimeLimit = TimeSpan.FromMilliseconds(50), MaxRounds = 5, Channels = channels },
            new LocalMigrationHooks
            {
                Network = sniffer,
                ListenAt = tcp ? "127.0.0.1:0" : null,
                SourceTransport = t => new TlsTransport(t, pki.Settings("source")),
                DestinationTransport = t => new TlsTransport(t, pki.Settings("destination")),
            });
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(VmLocation.Destination, r.VmLocation);
            await destination!.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(digest, StateDigest.Compute(destination.Machine));
        }

        // Every connection (main, fault, and the bulk ones) carried TLS records, never a plain frame.
        Assert.Equal(channels > 1 ? 2 + channels : 2, sniffer.FirstBytes.Count);
        Assert.All(sniffer.FirstBytes, b => Assert.Equal(0x16, b));
        Assert.False(sniffer.SawPlainHello, "a plain Hello crossed the wire");
    }

    /// <summary>
    /// Each refused handshake: what the source's report says (one line), what the destination
    /// logged of it (null: nothing to log, the source gave up first), and the VM runs on at the source.
    /// </summary>
    [Theory]
    [InlineData("destination of another CA", "not issued by the trusted CA", null)]
    [InlineData("source of another CA", "TLS", "not issued by the trusted CA")]
    [InlineData("source without a certificate", "connection closed", "presented no certificate")]
    [InlineData("plain source, TLS destination", "accepts only TLS", "not TLS")]
    [InlineData("TLS source, plain destination", "TLS handshake with", null)]
    public async Task A_refused_tls_handshake_leaves_the_vm_running_at_the_source(string setup, string error, string? logged)
    {
        using var pki = new TestPki();
        using var other = new TestPki("another CA");
        Func<MigrationTransport, MigrationTransport> sourceTls = t => new TlsTransport(t, pki.Settings("source"));
        Func<MigrationTransport, MigrationTransport> destinationTls = t => new TlsTransport(t, pki.Settings("destination"));
        Func<MigrationTransport, MigrationTransport> plain = t => t;
        (Func<MigrationTransport, MigrationTransport> source, Func<MigrationTransport, MigrationTransport> destination) = setup switch
        {
            "destination of another CA" => (sourceTls, t => new TlsTransport(t, other.Settings("destination", trusted: pki))),
            "source of another CA" => (t => new TlsTransport(t, other.Settings("source", trusted: pki)), destinationTls),
            "source without a certificate" => (t => new AnonymousTlsTransport(t, pki), destinationTls),
            "plain source, TLS destination" => (plain, destinationTls),
            _ => (sourceTls, plain),
        };
        var refusals = new List<string>();
        using LocalVm vm = await Harness.StartAsync("idle", "interval_ms=1", Memory, 100_000, ulong.MaxValue);
        (MigrationReport r, LocalVm? arrived) = await LocalMigration.RunAsync(vm, new MigrationOptions { Strategy = StrategyKind.PostCopy },
            new LocalMigrationHooks
            {
                SourceTransport = source,
                DestinationTransport = destination,
                OnRefused = m =>
                {
                    lock (refusals)
                    {
                        refusals.Add(m);
                    }
                },
            });
        Assert.Null(arrived);
        Assert.Equal(MigrationOutcome.Failed, r.Outcome);
        Assert.Equal(VmLocation.Source, r.VmLocation);
        Assert.True(vm.Runner.IsRunning, "the VM runs on at the source");
        Assert.False(vm.ResumedHere, "it was never paused");
        Assert.Contains(error, r.Error);
        Assert.DoesNotContain('\n', r.Error ?? "");
        if (logged is not null)
        {
            lock (refusals)
            {
                Assert.Contains(refusals, m => m.Contains(logged, StringComparison.Ordinal));
            }
        }
    }

    /// <summary>
    /// A listener disposed while a connection's handshake is still refusing its peer returns
    /// only once that refusal is logged (an in-process migration's report and its destination's
    /// log then agree; CI once saw the source's report before the destination's log line).
    /// </summary>
    [Fact]
    public async Task Disposing_a_listener_waits_for_the_refusals_in_progress()
    {
        var log = new List<string>();
        var accepted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var transport = new InMemoryTransport();
        var listener = new MigrationListener(
            new SlowRefusals(transport.Listen("slow"), accepted),
            (_, _) => Task.CompletedTask,
            m =>
            {
                lock (log)
                {
                    log.Add(m);
                }
            });
        listener.Start(CancellationToken.None);
        await using Stream client = await transport.ConnectAsync(listener.Endpoint, CancellationToken.None);
        await accepted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await listener.DisposeAsync();
        lock (log)
        {
            Assert.Contains(log, m => m.Contains("refused slowly", StringComparison.Ordinal));
        }
    }

    /// <summary>Accepts connections whose handshake fails after 100 ms, whatever the cancellation.</summary>
    private sealed class SlowRefusals(IConnectionListener inner, TaskCompletionSource accepted) : IConnectionListener
    {
        public string Endpoint => inner.Endpoint;

        public async ValueTask<AcceptedConnection> AcceptAsync(CancellationToken cancellation)
        {
            AcceptedConnection connection = await inner.AcceptAsync(cancellation);
            accepted.TrySetResult();
            return connection.WithHandshake(async (_, _) =>
            {
                await Task.Delay(100, CancellationToken.None);
                throw new MigrationPeerException("refused slowly");
            });
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    /// <summary>Records the first byte each source connection writes, and whether a plain Hello ever crossed.</summary>
    private sealed class SniffingTransport(MigrationTransport inner) : MigrationTransport
    {
        public List<byte> FirstBytes { get; } = [];

        public bool SawPlainHello { get; private set; }

        public override async Task<Stream> ConnectAsync(string endpoint, CancellationToken cancellation)
            => new Sniffer(await inner.ConnectAsync(endpoint, cancellation), this);

        public override IConnectionListener Listen(string endpoint) => inner.Listen(endpoint);

        private sealed class Sniffer(Stream stream, SniffingTransport owner) : DelegatingStream(stream), IConnectionControl
        {
            private bool _first = true;

            public int Available => (Inner as IConnectionControl)?.Available ?? 0;

            public void EnterKernelBlockingMode() => (Inner as IConnectionControl)?.EnterKernelBlockingMode();

            public void LimitKernelBuffers(int send, int receive) => (Inner as IConnectionControl)?.LimitKernelBuffers(send, receive);

            public override int Read(Span<byte> buffer) => Inner.Read(buffer);

            protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer)
            {
                Look(buffer.Span);
                return buffer;
            }

            private void Look(ReadOnlySpan<byte> bytes)
            {
                lock (owner)
                {
                    if (_first && bytes.Length > 0)
                    {
                        owner.FirstBytes.Add(bytes[0]);
                        _first = false;
                    }

                    if (bytes.IndexOf("FERRYMIG"u8) >= 0 || bytes.IndexOf(BitConverter.GetBytes(Hello.Magic)) >= 0)
                    {
                        owner.SawPlainHello = true;
                    }
                }
            }
        }
    }

    /// <summary>A TLS client that trusts the CA but presents no certificate of its own.</summary>
    private sealed class AnonymousTlsTransport(MigrationTransport inner, TestPki pki) : MigrationTransport
    {
        public override async Task<Stream> ConnectAsync(string endpoint, CancellationToken cancellation)
        {
            var tls = new SslStream(await inner.ConnectAsync(endpoint, cancellation));
            TlsSettings trust = pki.Settings("anonymous");
            try
            {
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = "localhost",
                    RemoteCertificateValidationCallback = (_, c, _, e) => trust.Check(c, e, true, _ => { }),
                }, cancellation);
            }
            catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException)
            {
                throw new MigrationPeerException("anonymous TLS refused: " + e.Message);
            }

            return tls;
        }

        public override IConnectionListener Listen(string endpoint) => inner.Listen(endpoint);
    }
}
