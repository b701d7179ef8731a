using System.Numerics;
using System.Runtime.CompilerServices;

namespace Ferry.Machine.Memory;

/// <summary>
/// One bit per guest page. Setting and clearing are atomic (Interlocked on the word), so a hart
/// thread, a device and a migration thread may all touch the same bitmap; the iteration and
/// copy helpers read words one at a time and are consistent per word only. The loops over the
/// whole map are compiled optimized at once (AggressiveOptimization): several run once per move,
/// in its pause, where a tier-0 loop's on-stack replacement would be compiled.
/// </summary>
public sealed class PageBitmap
{
    private readonly ulong[] _words;

    public PageBitmap(int bitCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bitCount);
        BitCount = bitCount;
        _words = new ulong[(bitCount + 63) / 64];
    }

    public int BitCount { get; }

    public int WordCount => _words.Length;

    /// <summary>The raw words, for bulk operations that own the bitmap (snapshots, tests).</summary>
    public Span<ulong> Words => _words;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Get(int bit) => (Volatile.Read(ref _words[bit >> 6]) & (1UL << (bit & 63))) != 0;

    /// <summary>Sets the bit; returns true if it was clear before.</summary>
    public bool Set(int bit)
    {
        ulong mask = 1UL << (bit & 63);
        return (Interlocked.Or(ref _words[bit >> 6], mask) & mask) == 0;
    }

    /// <summary>Clears the bit; returns true if it was set before.</summary>
    public bool Clear(int bit)
    {
        ulong mask = 1UL << (bit & 63);
        return (Interlocked.And(ref _words[bit >> 6], ~mask) & mask) != 0;
    }

    public void SetAll()
    {
        Array.Fill(_words, ulong.MaxValue);
        int tail = BitCount & 63;
        if (tail != 0)
        {
            _words[^1] = (1UL << tail) - 1;
        }
    }

    public void ClearAll() => Array.Clear(_words);

    /// <summary>Atomically moves every set bit into <paramref name="destination"/> (OR) and clears it here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void DrainInto(PageBitmap destination)
    {
        if (destination.BitCount != BitCount)
        {
            throw new ArgumentException("bitmap sizes differ", nameof(destination));
        }

        for (int i = 0; i < _words.Length; i++)
        {
            if (Volatile.Read(ref _words[i]) != 0)
            {
                destination._words[i] |= Interlocked.Exchange(ref _words[i], 0);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void CopyFrom(PageBitmap source)
    {
        if (source.BitCount != BitCount)
        {
            throw new ArgumentException("bitmap sizes differ", nameof(source));
        }

        for (int i = 0; i < _words.Length; i++)
        {
            _words[i] = Volatile.Read(ref source._words[i]);
        }
    }

    /// <summary>this &= ~other.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void AndNot(PageBitmap other)
    {
        for (int i = 0; i < _words.Length; i++)
        {
            _words[i] &= ~Volatile.Read(ref other._words[i]);
        }
    }

    /// <summary>this |= other.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Or(PageBitmap other)
    {
        for (int i = 0; i < _words.Length; i++)
        {
            _words[i] |= Volatile.Read(ref other._words[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int PopCount()
    {
        int n = 0;
        foreach (ulong w in _words)
        {
            n += BitOperations.PopCount(w);
        }

        return n;
    }

    /// <summary>Index of the first set bit at or after <paramref name="from"/>, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int NextSet(int from)
    {
        if (from >= BitCount)
        {
            return -1;
        }

        int wi = from >> 6;
        ulong w = Volatile.Read(ref _words[wi]) & (ulong.MaxValue << (from & 63));
        while (true)
        {
            if (w != 0)
            {
                int bit = (wi << 6) + BitOperations.TrailingZeroCount(w);
                return bit < BitCount ? bit : -1;
            }

            if (++wi >= _words.Length)
            {
                return -1;
            }

            w = Volatile.Read(ref _words[wi]);
        }
    }

    /// <summary>Enumerates set bits in ascending order (allocation-free struct enumerator).</summary>
    public SetBitEnumerator EnumerateSet() => new(this);

    public struct SetBitEnumerator
    {
        private readonly PageBitmap _bitmap;
        private int _next;

        internal SetBitEnumerator(PageBitmap bitmap)
        {
            _bitmap = bitmap;
            _next = 0;
            Current = -1;
        }

        public int Current { get; private set; }

        public readonly SetBitEnumerator GetEnumerator() => this;

        public bool MoveNext()
        {
            int bit = _bitmap.NextSet(_next);
            if (bit < 0)
            {
                _next = _bitmap.BitCount;
                return false;
            }

            Current = bit;
            _next = bit + 1;
            return true;
        }
    }
}
