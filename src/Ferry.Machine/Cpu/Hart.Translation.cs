using System.Diagnostics;
using System.Runtime.CompilerServices;
using Ferry.Machine.Cpu.Translation;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Cpu;

/// <summary>Which engine runs guest code: the interpreter alone, or translated blocks with the interpreter as fallback.</summary>
public enum ExecutionEngine
{
    Interpreter,
    Translator,
}

// The hart's side of the translator (Translation/BlockTranslator.cs emits the code): the block
// cache, hanging off the same per-page decode cache that the interpreter uses, and the hotness
// counters that decide what to translate.
//
// Invariants the migration and determinism rely on:
// - a block lives on one RAM page that holds decoded code (_isCode), so that page is out of the
//   write TLB and every store to it (guest, device, loader, migration) reaches InvalidateCode,
//   which drops the page's blocks with its decoded instructions;
// - a block runs only when the run's budget covers its longest pass (so runs end exactly where
//   the interpreter's end: icount deadlines, stop points), and it leaves after any slow path
//   that ended the run;
// - its loads and stores take the interpreter's TLB fast path and the same slow paths (page
//   facts are set only by TLB fills), and a faulting access exits with the pc of the faulting
//   instruction and the count before it, registers written by earlier instructions stored.
public sealed unsafe partial class Hart
{
    /// <summary>The default <see cref="TranslationThreshold"/>.</summary>
    public const int DefaultTranslationThreshold = 4096;

    /// <summary>The default <see cref="PromotionThreshold"/>.</summary>
    public const long DefaultPromotionThreshold = 500_000;

    private const int HeatMask = (1 << 16) - 1;

    private TranslatedBlock?[]?[] _blocks = [];
    private ushort[] _heat = [];
    private ExecutionEngine _engine;
    private int _hotThreshold = DefaultTranslationThreshold;
    private long _promotionThreshold = DefaultPromotionThreshold;

    /// <summary>Instructions the last translated block retired (written by the block).</summary>
    internal long _blockRetired;

    /// <summary>The last translated block exited on a trap or retry (the interpreter's Fault path takes over).</summary>
    internal bool _blockFault;

    // Where a quick block leaves when its memory helper says so (the run's count then, absolute).
    internal ulong _blockExitPc;
    internal long _blockExitN;

    private TranslationWorker? _worker;
    private QuickTier? _quick;
    private readonly HashSet<ulong> _pendingTranslations = [];
    private int _translationGeneration;
    private bool _translateInBackground = true;

    private TranslationCache? _shared;

    /// <summary>How many times the interpreter reaches a block's address before it looks for the block in <see cref="SharedTranslations"/> (a lookup is cheap next to a translation).</summary>
    public const int SharedLookupHeat = 2;

    private long _blocksTranslated;
    private long _blocksShared;
    private long _blocksPromoted;
    private long _instructionsTranslated;
    private long _translationTicks;
    private long _ilBytes;

    /// <summary>The engine that runs guest code (the translator unless told otherwise); changing it drops every translation (between runs only).</summary>
    public ExecutionEngine Engine
    {
        get => _engine;
        set
        {
            _engine = value;
            DropTranslations();
            if (value == ExecutionEngine.Translator && _blocks.Length == 0)
            {
                _blocks = new TranslatedBlock?[]?[_codePages.Length];
                _heat = new ushort[HeatMask + 1];
            }
        }
    }

    /// <summary>
    /// How many times the interpreter reaches an address before the block there is translated
    /// (1 to 65,535; 1 translates every block at once, as the lockstep tests do).
    /// </summary>
    public int TranslationThreshold
    {
        get => _hotThreshold;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, ushort.MaxValue);
            _hotThreshold = value;
        }
    }

    /// <summary>
    /// How many guest instructions a region's quick translation (compiled without the JIT's
    /// optimizations, cheap to make) retires before the region is compiled again with them
    /// (at least 1).
    /// </summary>
    public long PromotionThreshold
    {
        get => _promotionThreshold;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            _promotionThreshold = value;
        }
    }

    /// <summary>
    /// Whether regions are translated and compiled on a thread of their own while the hart goes on
    /// interpreting (the default), or at once on the hart's thread (what the tests use, so that
    /// what runs translated does not depend on thread timing; the results are the same either way).
    /// </summary>
    public bool TranslateInBackground
    {
        get => _translateInBackground;
        set
        {
            _translateInBackground = value;
            DropTranslations();
        }
    }

    /// <summary>
    /// Translations this hart takes from and gives to the other harts of the process (null: none,
    /// the default). A block found there for the same instructions is installed without compiling,
    /// at <see cref="SharedLookupHeat"/> passes rather than <see cref="TranslationThreshold"/>.
    /// </summary>
    public TranslationCache? SharedTranslations
    {
        get => _shared;
        set => _shared = value;
    }

    /// <summary>What the translator has done so far (cost and cache size).</summary>
    public TranslationStatistics TranslationStatistics => new(
        _blocksTranslated,
        _instructionsTranslated,
        Stopwatch.GetElapsedTime(0, _translationTicks),
        _ilBytes,
        LiveBlocks(),
        _blocksPromoted,
        _blocksShared);

    /// <summary>Drops every translated block (snapshot restore, migration resume, engine change).</summary>
    public void DropTranslations()
    {
        Array.Clear(_blocks);
        Array.Clear(_heat);
        _pendingTranslations.Clear();
        _translationGeneration++;
    }

    /// <summary>Installs what the background translator finished (between runs, on the hart's thread).</summary>
    private void InstallTranslations()
    {
        while (_worker!.TryTake(out TranslationResult result))
        {
            TranslationRequest r = result.Request;
            if (r.Generation != _translationGeneration)
            {
                continue;
            }

            _pendingTranslations.Remove(r.Pc);
            if (ReferenceEquals(_codePages[r.Page], r.Code))
            {
                Install(result);
            }
        }
    }

    private void Install(TranslationResult result)
    {
        TranslationRequest r = result.Request;
        _shared?.Publish(r, result.Block);
        TranslatedBlock?[] pageBlocks = _blocks[r.Page] ??= new TranslatedBlock?[GuestMemory.PageSize / 2];
        pageBlocks[(r.Pc & GuestMemory.PageMask) >> 1] = result.Block;
        _blocksTranslated++;
        _blocksPromoted += r.Optimize ? 1 : 0;
        _instructionsTranslated += r.Region.Count;
        _ilBytes += result.Block.IlBytes;
        _translationTicks += result.Ticks;
    }

    /// <summary>The requests the cached blocks were translated from (the translation cost benchmark compiles them again).</summary>
    internal List<TranslationRequest> CachedRegions()
    {
        var regions = new List<TranslationRequest>();
        foreach (TranslatedBlock?[]? page in _blocks)
        {
            if (page is not null)
            {
                regions.AddRange(page.OfType<TranslatedBlock>().Select(b => b.Request));
            }
        }

        return regions;
    }

    private int LiveBlocks()
    {
        int live = 0;
        foreach (TranslatedBlock?[]? page in _blocks)
        {
            if (page is not null)
            {
                foreach (TranslatedBlock? b in page)
                {
                    live += b is null ? 0 : 1;
                }
            }
        }

        return live;
    }

    /// <summary>
    /// Translates the block at <paramref name="pc"/> (hot: the interpreter reached it
    /// <see cref="TranslationThreshold"/> times) and caches it. Null if its first instruction is not covered.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private TranslatedBlock? TranslateAt(ulong pc, int page, ref TranslatedBlock?[]? pageBlocks)
    {
        DecodedInsn[]? code = _codePages[page];
        if (code is null || (_translateInBackground && _pendingTranslations.Contains(pc)))
        {
            return null;
        }

        // An address whose first instruction is not covered (an FP loop, a trap handler's CSR
        // accesses) comes back here at every threshold: refuse it without allocating.
        ref DecodedInsn first = ref code[(pc & GuestMemory.PageMask) >> 1];
        if (first.Op == Op.Undecoded)
        {
            DecodeSlot(ref first, page, pc);
        }

        if (!BlockTranslator.Covers(first.Op))
        {
            return null;
        }

        if (_shared is not null && SharedAt(pc, page, ref pageBlocks) is TranslatedBlock shared)
        {
            return shared;
        }

        SortedList<int, DecodedInsn> region = FindRegion(pc, page, code);
        if (region.Count == 0)
        {
            return null;
        }

        Request(new TranslationRequest(pc, page, code, region, _translationGeneration));
        pageBlocks = _blocks[page];
        TranslatedBlock? made = pageBlocks?[(pc & GuestMemory.PageMask) >> 1];
        return made is not null && made.Pc == pc ? made : null; // none yet when translating in the background
    }

    /// <summary>
    /// Installs the block at <paramref name="pc"/> from <see cref="SharedTranslations"/> if a region
    /// kept there covers exactly the instructions this page holds (each decoded from this hart's
    /// memory and compared); null otherwise, or if nothing is kept at that address.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private TranslatedBlock? SharedAt(ulong pc, int page, ref TranslatedBlock?[]? pageBlocks)
    {
        TranslationCache.Entry[]? entries = _shared!.At(pc);
        DecodedInsn[]? code = _codePages[page];
        if (entries is null || code is null || (_translateInBackground && _pendingTranslations.Contains(pc)))
        {
            return null;
        }

        ulong pageBase = pc & ~(ulong)GuestMemory.PageMask;
        foreach (TranslationCache.Entry e in entries)
        {
            bool fits = true;
            for (int i = 0; i < e.Offsets.Length && fits; i++)
            {
                ref DecodedInsn d = ref code[e.Offsets[i] >> 1];
                if (d.Op == Op.Undecoded)
                {
                    DecodeSlot(ref d, page, pageBase + (ulong)e.Offsets[i]);
                }

                fits = TranslationCache.Same(d, e.Instructions[i]);
            }

            if (fits)
            {
                _shared.Counted(hit: true);
                var request = new TranslationRequest(pc, page, code, e.Region, _translationGeneration, e.Optimized);
                var block = new TranslatedBlock(request, e.Length, e.IlBytes, e.Code);
                pageBlocks = _blocks[page] ??= new TranslatedBlock?[GuestMemory.PageSize / 2];
                pageBlocks[(pc & GuestMemory.PageMask) >> 1] = block;
                _blocksShared++;
                return block;
            }
        }

        _shared.Counted(hit: false);
        return null;
    }

    /// <summary>
    /// A quick block retired <see cref="PromotionThreshold"/> instructions: its region is compiled
    /// again with the JIT's optimizations (it keeps running meanwhile).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Promote(TranslatedBlock block)
    {
        block.Retired = long.MinValue; // once
        Request(block.Request with { Optimize = true, Generation = _translationGeneration });
    }

    /// <summary>Queues a translation for the worker, or makes and installs it now in the foreground.</summary>
    private void Request(TranslationRequest request)
    {
        _quick ??= new QuickTier();
        if (_translateInBackground)
        {
            if (_pendingTranslations.Add(request.Pc))
            {
                (_worker ??= new TranslationWorker(_quick)).Enqueue(request);
            }

            return;
        }

        TranslationWorker.Translate(_quick, [request], Install);
    }

    /// <summary>
    /// A quick block's load (its code calls this rather than inlining the probe, which keeps the
    /// block small to compile): the interpreter's TLB fast path, else its slow path. Writes rd only
    /// if the load completed. Returns true if the block must leave: on a fault or retry (exit at this
    /// instruction, <see cref="_blockFault"/> set) or when the slow path ended the run (exit after it).
    /// <paramref name="kind"/> is the size, 16 if sign-extended, and the instruction's length times 256.
    /// </summary>
    internal bool BlockLoad(ulong va, int kind, long n, ulong pc, ref ulong rd)
    {
        int size = kind & 0xF;
        TlbEntry* e = _rtlb + ((va >> 12) & TlbMask);
        ulong v;
        bool leave = false;
        if (e->Tag == va >> 12 && (va & GuestMemory.PageMask) <= (ulong)(GuestMemory.PageSize - size))
        {
            v = ReadHost((byte*)(e->Addend + (long)va), size);
        }
        else if (!LoadSlow(va, size, n, out v))
        {
            return BlockFault(pc, n);
        }
        else
        {
            leave = Volatile.Read(ref _budget) == 0 && BlockLeave(pc + (ulong)(kind >> 8), n + 1);
        }

        rd = (kind & 0x10) == 0 ? v : size switch
        {
            1 => (ulong)(long)(sbyte)v,
            2 => (ulong)(long)(short)v,
            _ => (ulong)(long)(int)v,
        };
        return leave;
    }

    /// <summary>A quick block's store (see <see cref="BlockLoad"/>; <paramref name="kind"/> is the size plus the length times 256).</summary>
    internal bool BlockStore(ulong va, int kind, ulong value, long n, ulong pc)
    {
        int size = kind & 0xF;
        TlbEntry* e = _wtlb + ((va >> 12) & TlbMask);
        if (e->Tag == va >> 12 && (va & GuestMemory.PageMask) <= (ulong)(GuestMemory.PageSize - size))
        {
            WriteHost((byte*)(e->Addend + (long)va), size, value);
            return false;
        }

        if (!StoreSlow(va, size, value, n))
        {
            return BlockFault(pc, n);
        }

        return Volatile.Read(ref _budget) == 0 && BlockLeave(pc + (ulong)(kind >> 8), n + 1);
    }

    private bool BlockFault(ulong pc, long n)
    {
        _blockFault = true;
        return BlockLeave(pc, n);
    }

    private bool BlockLeave(ulong pc, long n)
    {
        _blockExitPc = pc;
        _blockExitN = n;
        return true;
    }

    /// <summary>
    /// The covered instructions reachable from <paramref name="pc"/> on its page by fall-through
    /// and static branches and jumps (at most <see cref="BlockTranslator.MaxInstructions"/>),
    /// by page offset. Anything else (an instruction not covered, a target on another page, an
    /// indirect jump, the page's end, above threshold 1 an instruction never executed) is where
    /// the region exits to the interpreter.
    /// </summary>
    private SortedList<int, DecodedInsn> FindRegion(ulong pc, int page, DecodedInsn[] code)
    {
        var region = new SortedList<int, DecodedInsn>();
        var pending = new Stack<int>();
        ulong pageBase = pc & ~(ulong)GuestMemory.PageMask;
        pending.Push((int)(pc & GuestMemory.PageMask));
        while (pending.Count > 0 && region.Count < BlockTranslator.MaxInstructions)
        {
            int offset = pending.Pop();
            if (region.ContainsKey(offset))
            {
                continue;
            }

            ref DecodedInsn d = ref code[offset >> 1];
            ulong at = pageBase + (ulong)offset;
            if (d.Op == Op.Undecoded)
            {
                // Past the threshold, an instruction never decoded was never executed (since the
                // page was last written): leave that path to the interpreter, as the region's exit,
                // rather than compile code that has not run. At threshold 1 nothing has run yet.
                if (_hotThreshold > 1 && offset != (int)(pc & GuestMemory.PageMask))
                {
                    continue;
                }

                DecodeSlot(ref d, page, at);
            }

            if (!BlockTranslator.Covers(d.Op))
            {
                continue;
            }

            region.Add(offset, d);
            if (d.Op is >= Op.Jal and <= Op.Bgeu and not Op.Jalr)
            {
                ulong target = at + (ulong)(long)d.Imm;
                if (BlockTranslator.SamePage(at, target))
                {
                    pending.Push((int)(target & GuestMemory.PageMask));
                }
            }

            if (d.Op is not (Op.Jal or Op.Jalr) && offset + d.Length < GuestMemory.PageSize)
            {
                pending.Push(offset + d.Length);
            }
        }

        return region;
    }
}

/// <summary>
/// The translator's cost and cache size: translations made (quick and optimized) and their guest
/// instructions, time spent, IL emitted, blocks cached now, how many of the translations
/// were promotions of hot quick blocks to optimized code, and how many blocks were installed
/// from the process's shared translations instead of being translated.
/// </summary>
public readonly record struct TranslationStatistics(long Blocks, long Instructions, TimeSpan Time, long IlBytes, int CachedBlocks, long Promoted = 0, long Shared = 0);
