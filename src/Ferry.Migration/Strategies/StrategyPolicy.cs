using Ferry.Machine.Memory;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Strategies;

/// <summary>
/// A migration strategy is a policy answering three questions over the shared mechanisms
/// (page sender, switchover, fault server, push queue, working-set estimator):
/// what to send while the VM still runs, what to send during the pause, and whether the VM
/// resumes at the destination before all its pages are there.
/// </summary>
internal abstract class StrategyPolicy
{
    public abstract StrategyKind Kind { get; }

    /// <summary>True if the destination resumes with pages still absent (post-copy phase follows).</summary>
    public abstract bool ResumesBeforeAllPages { get; }

    /// <summary>Runs while the VM executes at the source; returns when it is time to pause.</summary>
    public virtual Task RunLiveAsync(SourceContext context, CancellationToken cancellation) => Task.CompletedTask;

    /// <summary>
    /// Pages to send during the pause, after the final dirty-log collection. Every page must be
    /// populated and not already delivered. Pre-copy must return all of them.
    /// </summary>
    public abstract PageBitmap SelectPausePages(SourceContext context);

    public static StrategyPolicy For(StrategyKind kind) => kind switch
    {
        StrategyKind.PreCopy => new PreCopyPolicy(),
        StrategyKind.PostCopy => new PostCopyPolicy(),
        StrategyKind.Hybrid => new HybridPolicy(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };
}

/// <summary>Copy while running, round after round of dirtied pages, until the rest fits the downtime limit.</summary>
internal sealed class PreCopyPolicy : StrategyPolicy
{
    public override StrategyKind Kind => StrategyKind.PreCopy;

    public override bool ResumesBeforeAllPages => false;

    public override async Task RunLiveAsync(SourceContext context, CancellationToken cancellation)
    {
        // Round 0 sends every populated page; each later round sends what the last one saw dirtied.
        PageBitmap toSend = context.Undelivered();
        for (int round = 0; ; round++)
        {
            (PageBitmap dirty, RoundReport report) = await context.SendRoundAsync(round, toSend, cancellation).ConfigureAwait(false);

            // Switch over once the rest fits the downtime limit, unless the rounds are still
            // converging fast (this round's dirtied pages are under half of what it sent): then
            // another round costs a fraction of this one and cuts the pause in proportion, down
            // to a floor below which a pause is as short as it gets.
            bool fits = report.ExpectedDowntimeMs <= context.Options.DowntimeLimit.TotalMilliseconds;
            bool converging = report.DirtiedPages * 2 < report.Pages && report.ExpectedDowntimeMs > ConvergedDowntimeMs;
            bool outOfRounds = round + 1 >= context.Options.MaxRounds;
            bool outOfTime = context.Elapsed >= context.Options.MaxLiveTime;
            if ((fits && !converging) || outOfRounds || outOfTime)
            {
                return;
            }

            toSend = dirty;
        }
    }

    public override PageBitmap SelectPausePages(SourceContext context) => context.Undelivered();

    /// <summary>An expected pause this short is not worth another round.</summary>
    private const double ConvergedDowntimeMs = 1.0;
}

/// <summary>Send nothing ahead (unless live passes are asked for): CPU and devices (and the map of pages still to come) in the pause, then exact-page faults and a linear push.</summary>
internal sealed class PostCopyPolicy : StrategyPolicy
{
    public override StrategyKind Kind => StrategyKind.PostCopy;

    public override bool ResumesBeforeAllPages => true;

    public override Task RunLiveAsync(SourceContext context, CancellationToken cancellation) => context.LivePassesAsync(cancellation);

    public override PageBitmap SelectPausePages(SourceContext context) => new(context.Memory.PageCount);
}

/// <summary>
/// The paper's hybrid: the working set travels with CPU and devices in the pause (optionally
/// sent ahead while the VM runs, so the pause resends only its dirty part, and optionally
/// after live passes over all memory); then each fault brings its locality window, and the
/// push serves fault neighbourhoods and recently used pages first.
/// </summary>
internal sealed class HybridPolicy : StrategyPolicy
{
    public override StrategyKind Kind => StrategyKind.Hybrid;

    public override bool ResumesBeforeAllPages => true;

    public override async Task RunLiveAsync(SourceContext context, CancellationToken cancellation)
    {
        await context.LivePassesAsync(cancellation).ConfigureAwait(false);
        if (!context.Options.WorkingSetPresend)
        {
            return;
        }

        PageBitmap workingSet = context.WorkingSet();
        await context.Sender.SendAllAsync(workingSet, PagePhase.Live, cancellation).ConfigureAwait(false);
        context.MarkDelivered(workingSet);
    }

    public override PageBitmap SelectPausePages(SourceContext context)
    {
        PageBitmap workingSet = context.WorkingSet();
        workingSet.AndNot(context.Delivered);
        return workingSet;
    }
}
