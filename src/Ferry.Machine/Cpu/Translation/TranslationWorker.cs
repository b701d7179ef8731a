using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Ferry.Machine.Cpu.Translation;

/// <summary>
/// A region to translate: its entry, the RAM page and that page's decode cache when it was found, the
/// instructions, and the tier (quick: compiled without optimization, cheap to JIT; or optimized).
/// </summary>
internal sealed record TranslationRequest(ulong Pc, int Page, DecodedInsn[] Code, SortedList<int, DecodedInsn> Region, int Generation, bool Optimize = false);

/// <summary>A translated region, compiled, with the time it took (emission and JIT).</summary>
internal sealed record TranslationResult(TranslationRequest Request, TranslatedBlock Block, long Ticks);

/// <summary>
/// Translates and compiles regions on a thread of its own, so the hart keeps interpreting while
/// the JIT works (a Linux boot runs most of its code too few times to repay a translation on
/// the hart's own thread). The hart installs the results between runs, and only if the page's
/// decode cache is still the one the region was read from (no store to the page since) and no
/// drop came in between (<see cref="TranslationRequest.Generation"/>). The worker reads nothing
/// of the hart or of guest memory: the request holds copies of the decoded instructions.
/// Requests that queued up meanwhile are compiled together: the quick tier's regions of one
/// batch share one type of the hart's <see cref="QuickTier"/>.
/// </summary>
internal sealed class TranslationWorker : IDisposable
{
    private const int MaxBatch = 32;

    private readonly BlockingCollection<TranslationRequest> _requests = new(new ConcurrentQueue<TranslationRequest>());
    private readonly ConcurrentQueue<TranslationResult> _results = new();
    private readonly QuickTier _quick;
    private readonly Thread _thread;
    private volatile bool _disposed;

    public TranslationWorker(QuickTier quick)
    {
        _quick = quick;
        _thread = new Thread(Loop) { IsBackground = true, Name = "ferry translator", Priority = ThreadPriority.BelowNormal };
        _thread.Start();
    }

    public bool HasResults => !_results.IsEmpty;

    public void Enqueue(TranslationRequest request) => _requests.Add(request);

    public bool TryTake(out TranslationResult result) => _results.TryDequeue(out result!);

    /// <summary>
    /// Emits and compiles regions, handing each result to <paramref name="done"/> as soon as it is
    /// compiled (also used by the hart itself when it translates in the foreground).
    /// </summary>
    public static void Translate(QuickTier quick, IReadOnlyList<TranslationRequest> requests, Action<TranslationResult> done)
    {
        var quickOnes = new List<TranslationRequest>(requests.Count);
        foreach (TranslationRequest r in requests)
        {
            if (r.Optimize)
            {
                long start = Stopwatch.GetTimestamp();
                TranslatedBlock block = BlockTranslator.Translate(r);
                Compile(block);
                done(new TranslationResult(r, block, Stopwatch.GetTimestamp() - start));
            }
            else
            {
                quickOnes.Add(r);
            }
        }

        if (quickOnes.Count == 0)
        {
            return;
        }

        // One type for the batch: its emission cost is shared, each method's JIT is its own.
        long emitStart = Stopwatch.GetTimestamp();
        TranslatedBlock[] blocks = quick.Translate(quickOnes);
        long emitShare = (Stopwatch.GetTimestamp() - emitStart) / blocks.Length;
        for (int i = 0; i < blocks.Length; i++)
        {
            long start = Stopwatch.GetTimestamp();
            Compile(blocks[i]);
            done(new TranslationResult(quickOnes[i], blocks[i], emitShare + Stopwatch.GetTimestamp() - start));
        }
    }

    /// <summary>Has the JIT compile the block now (called with a negative count, it returns at once).</summary>
    private static void Compile(TranslatedBlock block) => block.Code(null!, ref Unsafe.NullRef<ulong>(), -1);

    private void Loop()
    {
        var batch = new List<TranslationRequest>(MaxBatch);
        foreach (TranslationRequest first in _requests.GetConsumingEnumerable())
        {
            batch.Clear();
            batch.Add(first);
            while (batch.Count < MaxBatch && _requests.TryTake(out TranslationRequest? more))
            {
                batch.Add(more);
            }

            if (!_disposed)
            {
                // A disposed hart's queue is drained without compiling: nobody will run it.
                Translate(_quick, batch, _results.Enqueue);
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _requests.CompleteAdding();
    }
}
