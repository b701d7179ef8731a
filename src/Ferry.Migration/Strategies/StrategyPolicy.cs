using System.Text.Json;
using System.Text.Json.Serialization;
using Ferry.Machine.Memory;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Strategies;

/// <summary>
/// A migration strategy is a policy answering three questions over the shared mechanisms
/// (page sender, switchover, fault server, push queue, working-set estimator):
/// what to send while the VM still runs, what to send during the pause, and whether the VM
/// resumes at the destination before all its pages are there. Every strategy-specific choice
/// (knobs, the report's and the CLI's questions) is a member here, so that a new strategy is
/// one class and one <see cref="StrategyKind"/> value, registered in <see cref="For"/>.
/// </summary>
public abstract class StrategyPolicy
{
    public abstract StrategyKind Kind { get; }

    /// <summary>The strategy's name in the CLI, the API and reports (precopy, postcopy, hybrid, auto).</summary>
    public abstract string Name { get; }

    /// <summary>What the CLI says of it (`ferry migrate --strategy`'s help).</summary>
    public abstract string Description { get; }

    /// <summary>
    /// The hybrid's post-switchover mechanisms: a fault brings its locality window (adaptive by
    /// default) and the push serves fault neighbourhoods and recently used pages first; without
    /// them a fault brings its page alone and the push is linear.
    /// </summary>
    protected virtual bool HybridMechanisms => false;

    /// <summary>Pages a fault brings: the page alone, or the hybrid's window (<see cref="MigrationOptions.LocalityPages"/>).</summary>
    public int Locality(MigrationOptions options) => !HybridMechanisms ? 1
        : Math.Max(1, options.LocalityPages ?? (LocalityAdaptive(options) ? MigrationOptions.DefaultAdaptiveLocalityPages : MigrationOptions.DefaultLocalityPages));

    /// <summary>Whether the destination adapts the locality window to how faults run.</summary>
    public bool LocalityAdaptive(MigrationOptions options) => HybridMechanisms && options.LocalityAdaptive;

    /// <summary>Passes over memory while the VM runs, before the pause (post-copy and hybrid: <see cref="MigrationOptions.LivePasses"/>; pre-copy has rounds of its own).</summary>
    public virtual int LivePasses(MigrationOptions options) => options.LivePasses;

    /// <summary>The push's order after the resume: the one asked for, else the strategy's own.</summary>
    public PushOrder PushOrderFor(MigrationOptions options) => options.PushOrder != PushOrder.Default ? options.PushOrder
        : HybridMechanisms ? PushOrder.FaultNeighbourhoodThenRecency : PushOrder.Linear;

    /// <summary>True if the destination resumes with pages still absent (post-copy phase follows); decided by the live phase where the policy chooses (auto).</summary>
    public abstract bool ResumesBeforeAllPages { get; }

    /// <summary>
    /// False for a strategy that never resumes before all pages are there (pre-copy): its pause
    /// sends whatever is left (stop-and-copy when the rounds did not converge), and it has no
    /// network faults to report.
    /// </summary>
    public virtual bool MayResumeBeforeAllPages => true;

    /// <summary>Whether the migration <paramref name="report"/> describes had a post-copy phase (the faults and arrivals `ferry migrate` prints).</summary>
    public virtual bool HadPostCopyPhase(MigrationReport report) => MayResumeBeforeAllPages;

    /// <summary>True if the pause may carry the working set (the estimator's last window is closed in the pause, and the report has it).</summary>
    public virtual bool UsesWorkingSet => false;

    /// <summary>
    /// Whether a host's start-up warm-up runs a small migration of this strategy (a strategy whose
    /// code paths are all other strategies' needs none).
    /// </summary>
    public virtual bool WarmUp => true;

    /// <summary>The pause the working set may cost: <see cref="MigrationOptions.WorkingSetMaxPause"/> if given, else the downtime limit.</summary>
    public virtual TimeSpan PauseBudget(MigrationOptions options) => options.WorkingSetMaxPause ?? options.DowntimeLimit;

    /// <summary>The working set's cap in bytes (the pause budget caps it further, at the link's rate: <see cref="SourceContext.WorkingSet"/>).</summary>
    public virtual long WorkingSetCap(MigrationOptions options) => options.WorkingSetMaxBytes > 0 ? options.WorkingSetMaxBytes : MigrationOptions.DefaultWorkingSetMaxBytes;

    /// <summary>Runs while the VM executes at the source; returns when it is time to pause.</summary>
    internal virtual Task RunLiveAsync(SourceContext context, CancellationToken cancellation) => Task.CompletedTask;

    /// <summary>
    /// Pages to send during the pause, after the final dirty-log collection. Every page must be
    /// populated and not already delivered. Pre-copy must return all of them.
    /// </summary>
    internal abstract PageBitmap SelectPausePages(SourceContext context);

    /// <summary>A new policy for one migration (a policy may keep state: auto's decision). The one place a <see cref="StrategyKind"/> meets its class.</summary>
    public static StrategyPolicy For(StrategyKind kind) => kind switch
    {
        StrategyKind.PreCopy => new PreCopyPolicy(),
        StrategyKind.PostCopy => new PostCopyPolicy(),
        StrategyKind.Hybrid => new HybridPolicy(),
        StrategyKind.Auto => new AutoPolicy(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "no policy for this strategy"),
    };

    /// <summary>Every strategy, in the order the CLI lists them: auto (the default) first, then by value.</summary>
    public static readonly IReadOnlyList<StrategyKind> All = [.. Enum.GetValues<StrategyKind>().OrderBy(k => k != StrategyKind.Auto).ThenBy(k => k)];

    /// <summary>Every strategy's name, in <see cref="All"/>'s order.</summary>
    public static IEnumerable<string> Names => All.Select(NameOf);

    public static string NameOf(StrategyKind kind) => For(kind).Name;

    /// <summary>Whether a strategy byte read from the wire or a page file names a strategy this build has a policy for.</summary>
    public static bool IsKnown(byte value) => All.Contains((StrategyKind)value);

    /// <summary>A strategy by name (also pre-copy and post-copy); an unknown name is an <see cref="ArgumentException"/> listing the known ones.</summary>
    public static StrategyKind Parse(string name)
    {
        string n = name.Trim().ToLowerInvariant().Replace("-", "", StringComparison.Ordinal);
        foreach (StrategyKind kind in All)
        {
            if (NameOf(kind) == n)
            {
                return kind;
            }
        }

        throw new ArgumentException($"unknown strategy '{name}' ({string.Join(", ", Names)})");
    }

    /// <summary>
    /// Pre-copy's rounds: round 0 sends every page not yet delivered, each later round what the
    /// last one saw dirtied, until the rest fits the downtime limit (unless the rounds still
    /// converge fast: this round's dirtied pages under half of what it sent, then another round
    /// costs a fraction of this one and cuts the pause in proportion, down to a floor below which
    /// a pause is as short as it gets), or the rounds or the time run out. With
    /// <paramref name="stopWhenNotShrinking"/> it also stops as soon as a round's dirtied pages
    /// are not clearly fewer than the previous round's (the rounds stopped paying).
    /// </summary>
    private protected static async Task<RoundsEnd> RunRoundsAsync(SourceContext context, bool stopWhenNotShrinking, CancellationToken cancellation)
    {
        PageBitmap toSend = context.Undelivered();
        long previousDirtied = long.MaxValue;
        for (int round = 0; ; round++)
        {
            (PageBitmap dirty, RoundReport report) = await context.SendRoundAsync(round, toSend, cancellation).ConfigureAwait(false);
            bool fits = report.ExpectedDowntimeMs <= context.Options.DowntimeLimit.TotalMilliseconds;
            bool converging = report.DirtiedPages * 2 < report.Pages && report.ExpectedDowntimeMs > ConvergedDowntimeMs;
            if (fits && !converging)
            {
                return RoundsEnd.Fits;
            }

            if (!fits && stopWhenNotShrinking && round > 0 && report.DirtiedPages >= previousDirtied * ShrinkRatio)
            {
                return RoundsEnd.NotShrinking;
            }

            if (!fits && context.Options.AutoConverge && report.DirtiedPages * 2 >= report.Pages)
            {
                context.StepThrottle(round);
            }

            if (round + 1 >= context.Options.MaxRounds || context.Elapsed >= context.Options.MaxLiveTime)
            {
                return fits ? RoundsEnd.Fits : RoundsEnd.OutOfRoundsOrTime;
            }

            previousDirtied = report.DirtiedPages;
            toSend = dirty;
        }
    }

    /// <summary>An expected pause this short is not worth another round.</summary>
    private const double ConvergedDowntimeMs = 1.0;

    /// <summary>A round whose dirtied pages are at least this share of the previous round's did not shrink the rest.</summary>
    private const double ShrinkRatio = 0.9;

    private protected enum RoundsEnd
    {
        Fits,
        NotShrinking,
        OutOfRoundsOrTime,
    }
}

/// <summary>Copy while running, round after round of dirtied pages, until the rest fits the downtime limit.</summary>
internal sealed class PreCopyPolicy : StrategyPolicy
{
    public override StrategyKind Kind => StrategyKind.PreCopy;

    public override string Name => "precopy";

    public override string Description => "copy while the VM runs, round after round of dirtied pages, until the rest fits --downtime-limit (else stop-and-copy)";

    public override bool ResumesBeforeAllPages => false;

    public override bool MayResumeBeforeAllPages => false;

    public override int LivePasses(MigrationOptions options) => 0;

    /// <summary>Rounds until the rest fits the downtime limit; out of rounds or time, the pause sends the rest whatever it costs (stop-and-copy).</summary>
    internal override Task RunLiveAsync(SourceContext context, CancellationToken cancellation) => RunRoundsAsync(context, stopWhenNotShrinking: false, cancellation);

    internal override PageBitmap SelectPausePages(SourceContext context) => context.Undelivered();
}

/// <summary>Send nothing ahead (unless live passes are asked for): CPU and devices (and the map of pages still to come) in the pause, then exact-page faults and a linear push.</summary>
internal sealed class PostCopyPolicy : StrategyPolicy
{
    public override StrategyKind Kind => StrategyKind.PostCopy;

    public override string Name => "postcopy";

    public override string Description => "pause at once, resume at the destination, then fetch pages on fault and push the rest";

    public override bool ResumesBeforeAllPages => true;

    internal override Task RunLiveAsync(SourceContext context, CancellationToken cancellation) => context.LivePassesAsync(LivePasses(context.Options), cancellation);

    internal override PageBitmap SelectPausePages(SourceContext context) => new(context.Memory.PageCount);
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

    public override string Name => "hybrid";

    public override string Description => "the working set (what fits --downtime-limit) in the pause, then faults fetch a locality window and the push the rest";

    public override bool ResumesBeforeAllPages => true;

    public override bool UsesWorkingSet => true;

    protected override bool HybridMechanisms => true;

    internal override async Task RunLiveAsync(SourceContext context, CancellationToken cancellation)
    {
        await context.LivePassesAsync(LivePasses(context.Options), cancellation).ConfigureAwait(false);
        if (!context.Options.WorkingSetPresend)
        {
            return;
        }

        PageBitmap workingSet = context.WorkingSet();
        await context.Sender.SendAllAsync(workingSet, PagePhase.Live, cancellation).ConfigureAwait(false);
        context.MarkDelivered(workingSet);
    }

    internal override PageBitmap SelectPausePages(SourceContext context)
    {
        PageBitmap workingSet = context.WorkingSet();
        workingSet.AndNot(context.Delivered);
        return workingSet;
    }
}

/// <summary>
/// Auto: pre-copy when it is predicted to converge within the downtime limit, else the hybrid at
/// once; a running pre-copy whose rounds stop shrinking (or run out of rounds or time) goes
/// hybrid from where it is, so no pause is ever a stop-and-copy. The prediction: the guest's
/// dirty rate D (distinct pages it dirties per second, over a <see cref="DirtySample"/> window)
/// against the link's rate R (pages per second): pre-copy's rounds shrink by D/R each, so it
/// sends about 1/(1 - D/R) times memory; at D/R of <see cref="MaxPrecopyDirtyShare"/> or more
/// that is over 11 % more than the hybrid (each page once, the working set in the pause within
/// the budget), which is then chosen. An uncapped link's rate is unknown before pre-copy's first round
/// measures it: auto then starts with pre-copy and relies on the shrink check.
/// </summary>
internal sealed class AutoPolicy : StrategyPolicy
{
    /// <summary>
    /// How long the guest's dirtying is watched before deciding: a twentieth of the time memory
    /// takes on the link (so at most 5 % added), between 10 and 100 ms.
    /// </summary>
    public static TimeSpan DirtySample(long populatedPages, double? linkPagesPerSecond)
        => linkPagesPerSecond is double r && r > 0
            ? TimeSpan.FromMilliseconds(Math.Clamp(populatedPages / r / 20 * 1000, 10, 100))
            : TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// At this dirty rate (as a share of the link's) or above, go hybrid: pre-copy would send
    /// 1/(1 - share) times memory, over 11 % more bytes and time than the hybrid's each-page-once.
    /// </summary>
    public const double MaxPrecopyDirtyShare = 0.1;

    private bool _hybrid;

    public override StrategyKind Kind => StrategyKind.Auto;

    public override string Name => "auto";

    public override string Description => "pre-copy while it is predicted to converge within --downtime-limit, else hybrid; a pre-copy whose rounds stop shrinking goes hybrid";

    /// <summary>Auto runs pre-copy's and the hybrid's code, which their own warm-ups run.</summary>
    public override bool WarmUp => false;

    /// <summary>A post-copy phase unless the last decision (or the only one) was a strategy without one.</summary>
    public override bool HadPostCopyPhase(MigrationReport report)
        => report.Decisions is not [.., StrategyDecision last] || last.Choice == Kind || For(last.Choice).HadPostCopyPhase(report);

    public override bool ResumesBeforeAllPages => _hybrid;

    public override bool UsesWorkingSet => true;

    /// <summary>Auto may go hybrid at any point, so the destination is set up for the hybrid's faults and push from the start.</summary>
    protected override bool HybridMechanisms => true;

    /// <summary>Auto's live phase is pre-copy's rounds (or its watch): no passes of its own.</summary>
    public override int LivePasses(MigrationOptions options) => 0;

    internal override async Task RunLiveAsync(SourceContext context, CancellationToken cancellation)
    {
        // The watch costs no time: memory goes out (round 0's head, in page order) while the
        // guest's dirtying is measured, a window of DirtySample at a time, until a window's rate
        // says hybrid or what is left of round 0 fits in one window. What went is delivered
        // either way: the hybrid treats it as a partial live pass, pre-copy's round 0 goes on with
        // the rest. One window is not enough: a guest in a phase that only reads (verify checks
        // its whole region at the end of each pass) or a vCPU that got no CPU for the window looks
        // quiet, and pre-copy then ran a whole round before its shrink check sent it hybrid
        // (docs/results.md, "The pause budget checked again"). An uncapped link's rate is unknown:
        // one window, then pre-copy's rounds and their shrink check.
        double? link = context.LinkPagesPerSecond();
        await context.CollectDirtyAsync().ConfigureAwait(false); // the dirty log counts from here
        TimeSpan sample = DirtySample(context.Memory.Populated.PopCount(), link);
        long watchStart = System.Diagnostics.Stopwatch.GetTimestamp();
        double highest = 0;
        int windows = 0;
        PageBitmap head = context.Undelivered();
        while (true)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            await context.Sender.SendUntilAsync(head, PagePhase.Live, start + (long)(sample.TotalSeconds * System.Diagnostics.Stopwatch.Frequency), cancellation).ConfigureAwait(false);
            context.MarkDelivered(head);
            int dirtied = (await context.CollectDirtyAsync().ConfigureAwait(false)).PopCount();
            double dirtyRate = dirtied / Math.Max(System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds, 1e-3);
            windows++;
            highest = Math.Max(highest, dirtyRate);
            if (link is double r && dirtyRate >= MaxPrecopyDirtyShare * r)
            {
                string when = windows == 1 ? "" : $" in the watch's window {windows} ({System.Diagnostics.Stopwatch.GetElapsedTime(watchStart).TotalMilliseconds:0} ms in; the earlier ones looked quiet)";
                Decide(context, StrategyKind.Hybrid, $"the guest dirties {dirtyRate:0} pages/s{when}, {100 * dirtyRate / r:0.#}% of the link's {r:0}: pre-copy would send at least {1 / (1 - MaxPrecopyDirtyShare):0.##} times its memory, or never converge", dirtyRate, r, null);
                return;
            }

            // Round 0's rest fits in one more window: pre-copy's rounds take it from here.
            head = context.Undelivered();
            if (link is not double rate || head.PopCount() <= rate * sample.TotalSeconds)
            {
                break;
            }
        }

        string watched = windows == 1 ? "," : $" at most, over {windows} windows of {sample.TotalMilliseconds:0} ms,";
        Decide(context, StrategyKind.PreCopy, link is double l
            ? $"the guest dirties {highest:0} pages/s{watched} {100 * highest / l:0.#}% of the link's {l:0}: pre-copy converges"
            : $"the guest dirties {highest:0} pages/s; the link is uncapped, its rate unknown until a round measures it: pre-copy, going hybrid if its rounds stop shrinking",
            highest, link, null);
        RoundsEnd end = await RunRoundsAsync(context, stopWhenNotShrinking: true, cancellation).ConfigureAwait(false);
        if (end == RoundsEnd.Fits)
        {
            return;
        }

        RoundReport last = context.Rounds[^1];
        Decide(context, StrategyKind.Hybrid, end == RoundsEnd.NotShrinking
            ? $"pre-copy round {last.Round} left {last.DirtiedPages} dirty pages ({last.ExpectedDowntimeMs:0.0} ms at the link's rate, over the {context.Options.DowntimeLimit.TotalMilliseconds:0.#} ms limit) and the rounds stopped shrinking"
            : $"pre-copy ran out of rounds or time with {last.DirtiedPages} dirty pages ({last.ExpectedDowntimeMs:0.0} ms at the link's rate, over the {context.Options.DowntimeLimit.TotalMilliseconds:0.#} ms limit)",
            last.DirtyPagesPerSecond, context.LinkPagesPerSecond(), last.Round);
    }

    internal override PageBitmap SelectPausePages(SourceContext context)
    {
        if (!_hybrid)
        {
            return context.Undelivered();
        }

        PageBitmap workingSet = context.WorkingSet();
        workingSet.AndNot(context.Delivered);
        return workingSet;
    }

    private void Decide(SourceContext context, StrategyKind choice, string reason, double dirtyRate, double? link, int? round)
    {
        _hybrid = choice == StrategyKind.Hybrid;
        context.Decisions.Add(new StrategyDecision(context.Elapsed.TotalMilliseconds, choice, reason, dirtyRate, link, round));
    }
}

/// <summary>A <see cref="StrategyKind"/> in JSON: its policy's name (precopy, postcopy, hybrid, auto), read as <see cref="StrategyPolicy.Parse"/> reads it.</summary>
public sealed class StrategyNameJsonConverter : JsonConverter<StrategyKind>
{
    public override StrategyKind Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonException("a strategy is a name");
        }

        try
        {
            return StrategyPolicy.Parse(reader.GetString()!);
        }
        catch (ArgumentException e)
        {
            throw new JsonException(e.Message);
        }
    }

    public override void Write(Utf8JsonWriter writer, StrategyKind value, JsonSerializerOptions options)
        => writer.WriteStringValue(StrategyPolicy.NameOf(value));
}
