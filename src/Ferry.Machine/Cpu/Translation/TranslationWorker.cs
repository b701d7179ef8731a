using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Ferry.Machine.Cpu.Translation;

/// <summary>A region to translate: its entry, the RAM page and that page's decode cache when it was found, the instructions.</summary>
internal sealed record TranslationRequest(ulong Pc, int Page, DecodedInsn[] Code, SortedList<int, DecodedInsn> Region, int Generation);

/// <summary>A translated region, compiled, with the time it took (emission and JIT).</summary>
internal sealed record TranslationResult(TranslationRequest Request, TranslatedBlock Block, long Ticks);

/// <summary>
/// Translates and compiles regions on a thread of its own, so the hart keeps interpreting while
/// the JIT works (a Linux boot runs most of its code too few times to repay a translation on
/// the hart's own thread). The hart installs the results between runs, and only if the page's
/// decode cache is still the one the region was read from (no store to the page since) and no
/// drop came in between (<see cref="TranslationRequest.Generation"/>). The worker reads nothing
/// of the hart or of guest memory: the request holds copies of the decoded instructions.
/// </summary>
internal sealed class TranslationWorker : IDisposable
{
    private readonly BlockingCollection<TranslationRequest> _requests = new(new ConcurrentQueue<TranslationRequest>());
    private readonly ConcurrentQueue<TranslationResult> _results = new();
    private readonly Thread _thread;
    private volatile bool _disposed;

    public TranslationWorker()
    {
        _thread = new Thread(Loop) { IsBackground = true, Name = "ferry translator", Priority = ThreadPriority.BelowNormal };
        _thread.Start();
    }

    public bool HasResults => !_results.IsEmpty;

    public void Enqueue(TranslationRequest request) => _requests.Add(request);

    public bool TryTake(out TranslationResult result) => _results.TryDequeue(out result!);

    /// <summary>Emits and compiles one region (also used by the hart itself when it translates in the foreground).</summary>
    public static TranslationResult Translate(TranslationRequest request)
    {
        long start = Stopwatch.GetTimestamp();
        TranslatedBlock block = BlockTranslator.Translate(request.Pc, request.Region);
        block.Code(null!, ref Unsafe.NullRef<ulong>(), -1); // compile now (a negative count returns at once)
        return new TranslationResult(request, block, Stopwatch.GetTimestamp() - start);
    }

    private void Loop()
    {
        foreach (TranslationRequest request in _requests.GetConsumingEnumerable())
        {
            if (!_disposed)
            {
                // A disposed hart's queue is drained without compiling: nobody will run it.
                _results.Enqueue(Translate(request));
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _requests.CompleteAdding();
    }
}
