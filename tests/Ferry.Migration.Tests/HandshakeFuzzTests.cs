using System.Buffers.Binary;
using CsCheck;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// What a peer that has not yet authenticated can make a destination do: random and mutated
/// first frames (any type, any announced length up to the protocol's 8 MiB) fed to the
/// handshake. It reads a Hello or refuses with a ProtocolException, and never allocates more
/// than a Hello's worth for the frame, whatever length the header announces.
/// </summary>
public sealed class HandshakeFuzzTests
{
    /// <summary>The attacker's bytes to read; what the host writes back is discarded.</summary>
    private sealed class ScriptedPeer(byte[] bytes) : DelegatingStream(new MemoryStream(bytes))
    {
        protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer) => ReadOnlyMemory<byte>.Empty;
    }

    private static readonly byte[] ValidHello = new Hello
    {
        Role = ConnectionRole.Main,
        Token = new byte[Hello.TokenLength],
        VmName = "guest-1",
        Machine = new Machine.Board.MachineConfig { MemorySize = 64UL << 20 },
        Strategy = StrategyKind.Hybrid,
    }.Encode();

    /// <summary>A header (type, flags, announced length) and a body of random bytes or a mutated Hello.</summary>
    private static readonly Gen<byte[]> FirstBytes = Gen.Select(
        Gen.Frequency((3, Gen.Const((byte)MessageType.Hello)), (1, Gen.Byte)),
        Gen.Frequency((4, Gen.Const((byte)0)), (1, Gen.Byte)),
        Gen.Frequency((2, Gen.Int[0, 512]), (2, Gen.Int[512, 8 << 20]), (1, Gen.Int)),
        Gen.Frequency((1, Gen.Byte.Array[0, 600]), (2, Gen.Select(Gen.Int[0, 200].Array[0, 4], Gen.Byte[1, 255]).Select((at, xor) =>
        {
            byte[] h = (byte[])ValidHello.Clone();
            foreach (int i in at)
            {
                h[i % h.Length] ^= xor;
            }

            return h;
        }))),
        Gen.Bool).Select((type, flags, length, body, honest) =>
        {
            byte[] frame = new byte[FrameChannel.HeaderSize + body.Length];
            frame[0] = type;
            frame[1] = flags;
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(4), honest ? body.Length : length);
            body.CopyTo(frame, FrameChannel.HeaderSize);
            return frame;
        });

    [Fact]
    public void A_first_frame_is_a_Hello_or_a_refusal_and_costs_at_most_a_Hello_whatever_it_announces()
    {
        int accepted = 0;
        FirstBytes.Sample(bytes =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var channel = new FrameChannel(new ScriptedPeer(bytes));
            try
            {
                _ = MigrationAcceptor.ReadHelloAsync(channel, CancellationToken.None, TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();
                accepted++;
            }
            catch (ProtocolException)
            {
            }
            catch (MigrationPeerException)
            {
                // A Refused/Failed/Cancel frame instead of a Hello: refused with the peer's words.
            }

            long used = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(used < 48 << 10, $"a first frame of {bytes.Length} bytes announcing {BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4))} made the host allocate {used} bytes");
        }, iter: 20_000);
        Assert.True(accepted > 0, "no case reached a valid Hello");
    }

    [Fact]
    public void After_the_handshake_the_channel_accepts_frames_up_to_the_protocol_limit_again()
    {
        var channel = new FrameChannel(new ScriptedPeer([]));
        channel.ReceiveLimit = Hello.MaxEncodedSize;
        Assert.Equal(Hello.MaxEncodedSize, channel.ReceiveLimit);
        MigrationAcceptor.AcceptAsync(channel, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        Assert.Equal(FrameChannel.MaxPayload, channel.ReceiveLimit);
    }
}
