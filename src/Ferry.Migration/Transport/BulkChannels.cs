using System.Security.Cryptography;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Transport;

/// <summary>
/// The destination's view of one migration's bulk connections (<c>--channels N</c>, N ≥ 2, as
/// QEMU's multifd channels): exactly N, each with its own index, each authenticated by the
/// migration's token like its main and fault connections. A connection with an index outside
/// 0..N-1, a second one with an index already taken, or a count other than the one the main
/// connection's Hello announced is refused; the set completes when all N have arrived.
/// </summary>
public sealed class BulkChannelSet
{
    private readonly FrameChannel?[] _channels;
    private readonly byte[] _token;
    private int _arrived;

    public BulkChannelSet(byte[] token, int count)
    {
        if (count is < 2 or > Hello.MaxChannels)
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"a bulk channel set has 2..{Hello.MaxChannels} channels");
        }

        _token = token;
        _channels = new FrameChannel?[count];
    }

    public int Count => _channels.Length;

    /// <summary>All N channels, in index order, once they have arrived; cancelled if the migration ends first.</summary>
    public Task<FrameChannel[]> All => Completion.Task;

    internal TaskCompletionSource<FrameChannel[]> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Compared in constant time (the caller compares every set, so the time says nothing of a token).</summary>
    internal bool Matches(byte[] token) => CryptographicOperations.FixedTimeEquals(_token, token);

    /// <summary>Takes a bulk connection, or returns why it is refused (null when taken).</summary>
    internal string? TryAdd(Hello hello, FrameChannel channel)
    {
        lock (_channels)
        {
            if (hello.Channels != _channels.Length)
            {
                return $"bulk channel {hello.ChannelIndex} announces {hello.Channels} channels; this migration has {_channels.Length}";
            }

            if (hello.ChannelIndex >= _channels.Length)
            {
                return $"bulk channel index {hello.ChannelIndex} is outside this migration's {_channels.Length} channels";
            }

            if (Completion.Task.IsCompleted)
            {
                return "this migration's bulk channels are closed";
            }

            if (_channels[hello.ChannelIndex] is not null)
            {
                return $"bulk channel {hello.ChannelIndex} of this migration is already open";
            }

            _channels[hello.ChannelIndex] = channel;
            if (++_arrived == _channels.Length)
            {
                Completion.TrySetResult([.. _channels!]);
            }

            return null;
        }
    }

    /// <summary>A connection claiming this migration was refused: the migration fails with the reason (its source is not well).</summary>
    internal void Fail(string reason)
    {
        lock (_channels)
        {
            Completion.TrySetException(new ProtocolException("a bulk connection was refused: " + reason));
        }
    }

    /// <summary>The migration ended: no more channels are taken; the ones that came are closed.</summary>
    internal async ValueTask CloseAsync()
    {
        FrameChannel?[] taken;
        lock (_channels)
        {
            Completion.TrySetCanceled(CancellationToken.None);
            taken = [.. _channels];
        }

        foreach (FrameChannel? c in taken)
        {
            if (c is not null)
            {
                await c.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
