using System.Security.Cryptography;
using Ferry.Machine.Board;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration;

/// <summary>
/// A destination's promise to accept one VM: prepared through the control API before the
/// source connects (as QEMU's -incoming), it fixes the name and configuration the destination
/// will accept and the one-time token the source must present on both connections.
/// </summary>
public sealed record IncomingSlot(string Name, MachineConfig Config, byte[] Token, DateTimeOffset Expires)
{
    public static IncomingSlot Create(string name, MachineConfig config, TimeSpan lifetime)
        => new(name, config, RandomNumberGenerator.GetBytes(Hello.TokenLength), DateTimeOffset.UtcNow + lifetime);

    public bool Matches(byte[] token) => CryptographicOperations.FixedTimeEquals(token, Token);

    /// <summary>Checks a main-connection Hello against this slot: null if acceptable, else the reason.</summary>
    public string? Validate(Hello hello)
    {
        if (!Matches(hello.Token))
        {
            return "wrong migration token";
        }

        if (DateTimeOffset.UtcNow > Expires)
        {
            return "the incoming migration slot has expired";
        }

        if (hello.VmName != Name)
        {
            return $"this destination expects VM '{Name}', not '{hello.VmName}'";
        }

        if (hello.Machine.MemorySize != Config.MemorySize)
        {
            return $"memory size mismatch: the VM has {hello.Machine.MemorySize >> 20} MiB, the destination prepared {Config.MemorySize >> 20} MiB";
        }

        if (hello.Machine.Icount != Config.Icount)
        {
            return $"clock mode mismatch: the VM is {(hello.Machine.Icount ? "icount" : "real-time")}, the destination prepared {(Config.Icount ? "icount" : "real-time")}";
        }

        if (hello.PageSize != 4096)
        {
            return $"page size {hello.PageSize} is not supported";
        }

        if (hello.LocalityPages is < 1 or > 1024)
        {
            return $"locality window of {hello.LocalityPages} pages is out of range (1..1024)";
        }

        return null;
    }
}

/// <summary>The destination's half of the handshake on one connection.</summary>
public static class MigrationAcceptor
{
    /// <summary>The handshake deadline when the caller gives none (in-process migrations; a host agent passes its own, HostOptions.HandshakeTimeout).</summary>
    public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Reads the Hello of a connection whose peer is not yet known: the frame may announce at most
    /// a Hello's size (nothing larger is allocated), and it must arrive within <paramref name="timeout"/>.
    /// </summary>
    public static async Task<Hello> ReadHelloAsync(FrameChannel channel, CancellationToken cancellation, TimeSpan? timeout = null)
    {
        TimeSpan deadline = timeout ?? DefaultHandshakeTimeout;
        channel.ReceiveLimit = Hello.MaxEncodedSize;
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timer.CancelAfter(deadline);
        ReadOnlyMemory<byte> payload;
        try
        {
            payload = await channel.ExpectAsync(MessageType.Hello, timer.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new ProtocolException($"no Hello within the {deadline.TotalSeconds:0.###} s handshake deadline");
        }

        return Hello.Decode(payload.Span);
    }

    /// <summary>Accepts the peer: from now on it may send frames of any size the protocol allows.</summary>
    public static ValueTask AcceptAsync(FrameChannel channel, CancellationToken cancellation)
    {
        channel.ReceiveLimit = FrameChannel.MaxPayload;
        return channel.SendAsync(MessageType.Welcome, new HelloReply(true, "welcome").Encode(), cancellation);
    }

    public static async Task RefuseAsync(FrameChannel channel, string reason)
    {
        try
        {
            await channel.SendAsync(MessageType.Refused, new HelloReply(false, reason).Encode(), CancellationToken.None).AsTask()
                .WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or TimeoutException or ObjectDisposedException)
        {
        }
    }
}
