using System.Collections.Concurrent;

namespace Ferry.Machine.Cpu.Translation;

/// <summary>
/// Translations shared by the harts of one process: a host runs the same kernel and firmware in
/// VM after VM (and boots it once at start, <see cref="Board.LinuxWarmUp"/>), and a translated
/// region's code depends on nothing but its entry's virtual address and the instructions it
/// covers (the code takes the hart as its argument and reaches memory through that hart's TLB).
/// So a hart that reaches a block whose region another hart already compiled installs that code,
/// without compiling, if and only if its own page holds the same instructions at every offset
/// of the region (checked instruction by instruction, decoding from its own memory); anything
/// else is a miss and the hart translates as usual. Everything the translator guarantees still
/// holds: the block lives on the hart's own code page (a store to it drops it), runs only within
/// the budget, and is dropped on a restore like any other.
///
/// Bounded (<see cref="Capacity"/> regions; past it nothing more is kept). Thread-safe. A
/// machine uses one only if given it (<see cref="Hart.SharedTranslations"/>): the host agent
/// gives its VMs <see cref="Process"/>; tests give their own.
/// </summary>
public sealed class TranslationCache(int capacity = TranslationCache.DefaultCapacity)
{
    public const int DefaultCapacity = 16_384;

    /// <summary>The process's own cache (the host agent's VMs and its warm-up boot share it).</summary>
    public static TranslationCache Process { get; } = new();

    private readonly ConcurrentDictionary<ulong, Entry[]> _byPc = new();
    private int _count;
    private long _hits, _misses;

    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity));

    /// <summary>Regions kept.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Lookups that found code for the hart's own instructions, and those that did not (an entry at the address with other instructions, or none).</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <inheritdoc cref="Hits"/>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>A compiled region, with the instructions it covers by page offset (flat copies of the region's, for the harts' check).</summary>
    internal sealed class Entry(TranslationRequest request, TranslatedBlock block)
    {
        public readonly int[] Offsets = [.. request.Region.Keys];
        public readonly DecodedInsn[] Instructions = [.. request.Region.Values];
        public readonly SortedList<int, DecodedInsn> Region = request.Region;
        public readonly bool Optimized = request.Optimize;
        public readonly int Length = block.Length;
        public readonly int IlBytes = block.IlBytes;
        public readonly BlockCode Code = block.Code;

        public bool SameRegion(TranslationRequest other)
        {
            if (other.Region.Count != Offsets.Length)
            {
                return false;
            }

            IList<int> keys = other.Region.Keys;
            IList<DecodedInsn> values = other.Region.Values;
            for (int i = 0; i < Offsets.Length; i++)
            {
                if (keys[i] != Offsets[i] || !Same(values[i], Instructions[i]))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>Whether two decoded instructions are the same instruction.</summary>
    internal static bool Same(in DecodedInsn a, in DecodedInsn b) =>
        a.Raw == b.Raw && a.Op == b.Op && a.Length == b.Length && a.Imm == b.Imm && a.Rd == b.Rd && a.Rs1 == b.Rs1 && a.Rs2 == b.Rs2;

    /// <summary>Keeps what a hart compiled (not what it took from here), unless the same region at the same tier is kept already or the cache is full.</summary>
    internal void Publish(TranslationRequest request, TranslatedBlock block)
    {
        if (Volatile.Read(ref _count) >= Capacity)
        {
            return;
        }

        var entry = new Entry(request, block);
        while (true)
        {
            if (!_byPc.TryGetValue(request.Pc, out Entry[]? entries))
            {
                if (_byPc.TryAdd(request.Pc, [entry]))
                {
                    Interlocked.Increment(ref _count);
                    return;
                }

                continue;
            }

            if (entries.Any(e => e.Optimized == entry.Optimized && e.SameRegion(request)))
            {
                return;
            }

            // The optimized ones first: a lookup takes the first that fits.
            Entry[] next = entry.Optimized ? [entry, .. entries] : [.. entries, entry];
            if (_byPc.TryUpdate(request.Pc, next, entries))
            {
                Interlocked.Increment(ref _count);
                return;
            }
        }
    }

    /// <summary>The regions kept at <paramref name="pc"/>, optimized ones first (the hart checks them against its own instructions), or null.</summary>
    internal Entry[]? At(ulong pc) => _byPc.TryGetValue(pc, out Entry[]? entries) ? entries : null;

    /// <summary>Counts a lookup: a region fitted the hart's instructions, or none did.</summary>
    internal void Counted(bool hit) => Interlocked.Increment(ref hit ? ref _hits : ref _misses);
}
