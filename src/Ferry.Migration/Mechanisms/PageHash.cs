using System.IO.Hashing;
using System.Runtime.CompilerServices;
using Ferry.Machine.Memory;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The migration's memory digest: the sum (mod 2^64) over non-zero pages of
/// XxHash3(content, seed = page index). Order-independent, so the source can compute it over its
/// frozen memory and the destination over pages as they arrive, in any order, each page's last
/// delivery replacing the one before.
/// </summary>
public static class PageHash
{
    public static ulong Of(int page, ReadOnlySpan<byte> content)
        => content.ContainsAnyExcept((byte)0) ? XxHash3.HashToUInt64(content, page) : 0;

    /// <summary>Digest of every non-zero page of <paramref name="memory"/> (call with the VM paused).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per move, in the pause: compiled optimized up front, never on stack replacement there
    public static (ulong Digest, uint NonZeroPages) OfMemory(GuestMemory memory)
    {
        ulong sum = 0;
        uint count = 0;
        foreach (int page in memory.Populated.EnumerateSet())
        {
            ulong h = Of(page, memory.Page(page));
            if (h != 0)
            {
                sum += h;
                count++;
            }
        }

        return (sum, count);
    }
}

/// <summary>Per-page hashes of what one side has sent or received; the digest follows replacements.</summary>
public sealed class PageHashLedger
{
    private readonly ulong[] _hashes;
    private ulong _digest;
    private int _nonZero;

    public PageHashLedger(int pageCount) => _hashes = new ulong[pageCount];

    public ulong Digest => Volatile.Read(ref _digest);

    public int NonZeroPages => Volatile.Read(ref _nonZero);

    public void Record(int page, ulong hash)
    {
        lock (_hashes)
        {
            ulong old = _hashes[page];
            _hashes[page] = hash;
            _digest += hash - old;
            _nonZero += (hash != 0 ? 1 : 0) - (old != 0 ? 1 : 0);
        }
    }
}
