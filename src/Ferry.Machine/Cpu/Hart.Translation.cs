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

    private const int HeatMask = (1 << 16) - 1;

    private TranslatedBlock?[]?[] _blocks = [];
    private ushort[] _heat = [];
    private ExecutionEngine _engine;
    private int _hotThreshold = DefaultTranslationThreshold;

    /// <summary>Instructions the last translated block retired (written by the block).</summary>
    internal long _blockRetired;

    /// <summary>The last translated block exited on a trap or retry (the interpreter's Fault path takes over).</summary>
    internal bool _blockFault;

    private TranslationWorker? _worker;
    private readonly HashSet<ulong> _pendingTranslations = [];
    private int _translationGeneration;
    private bool _translateInBackground = true;

    private long _blocksTranslated;
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

    /// <summary>What the translator has done so far (cost and cache size).</summary>
    public TranslationStatistics TranslationStatistics => new(
        _blocksTranslated,
        _instructionsTranslated,
        Stopwatch.GetElapsedTime(0, _translationTicks),
        _ilBytes,
        LiveBlocks());

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
        TranslatedBlock?[] pageBlocks = _blocks[r.Page] ??= new TranslatedBlock?[GuestMemory.PageSize / 2];
        pageBlocks[(r.Pc & GuestMemory.PageMask) >> 1] = result.Block;
        _blocksTranslated++;
        _instructionsTranslated += r.Region.Count;
        _ilBytes += result.Block.IlBytes;
        _translationTicks += result.Ticks;
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

        SortedList<int, DecodedInsn> region = FindRegion(pc, page, code);
        if (region.Count == 0)
        {
            return null;
        }

        var request = new TranslationRequest(pc, page, code, region, _translationGeneration);
        if (_translateInBackground)
        {
            if (_pendingTranslations.Add(pc))
            {
                (_worker ??= new TranslationWorker()).Enqueue(request);
            }

            return null;
        }

        Install(TranslationWorker.Translate(request));
        pageBlocks = _blocks[page];
        return pageBlocks![(pc & GuestMemory.PageMask) >> 1];
    }

    /// <summary>
    /// The covered instructions reachable from <paramref name="pc"/> on its page by fall-through
    /// and static branches and jumps (at most <see cref="BlockTranslator.MaxInstructions"/>),
    /// by page offset. Anything else (an instruction not covered, a target on another page, an
    /// indirect jump, the page's end) is where the region exits to the interpreter.
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

/// <summary>The translator's cost and cache size: blocks and guest instructions translated, time spent, IL emitted, blocks cached now.</summary>
public readonly record struct TranslationStatistics(long Blocks, long Instructions, TimeSpan Time, long IlBytes, int CachedBlocks);
