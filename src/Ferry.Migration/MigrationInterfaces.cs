using Ferry.Machine.Board;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;

namespace Ferry.Migration;

/// <summary>A running VM as the source of a migration sees it (implemented by the host agent).</summary>
public interface IMigrationSource
{
    string Name { get; }

    VirtMachine Machine { get; }

    /// <summary>Instruction count at which the VM pauses, wherever it runs (ulong.MaxValue: none).</summary>
    ulong StopAt { get; }

    /// <summary>The host's continuous working-set estimate for this VM, if it keeps one.</summary>
    WorkingSetEstimator? WorkingSet { get; }

    InstructionRateMeter Rate { get; }

    /// <summary>Stops the VM between instructions; returns once nothing executes.</summary>
    Task PauseAsync(CancellationToken cancellation);

    /// <summary>The migration did not take the VM: run it here again (it was paused by <see cref="PauseAsync"/>).</summary>
    void ResumeHere();
}

/// <summary>The VM being built on the destination (implemented by the host agent).</summary>
public interface IIncomingVm
{
    VirtMachine Machine { get; }

    InstructionRateMeter Rate { get; }

    /// <summary>Runs the VM from its restored state (switchover).</summary>
    void Start();

    /// <summary>The migration failed: stop the VM if it runs and discard it.</summary>
    void Abort(string reason);

    /// <summary>All memory arrived and was verified: the VM is a normal VM of this host now.</summary>
    void Completed();

    /// <summary>
    /// The VM runs here but its source is away (after the resume): <paramref name="detail"/> says
    /// what it waits for (for its status); null once the source is back.
    /// </summary>
    void WaitingOnNetwork(string? detail);
}

/// <summary>Phases of the source side (one enum per role; transitions checked in <see cref="SourceMigration"/>).</summary>
public enum SourcePhase
{
    Connecting,
    LiveCopy,
    Switchover,
    PostCopy,

    /// <summary>The destination was lost after the state was sent: the VM is paused here, its memory and record kept, until a reconnection.</summary>
    Recovering,
    Verifying,
    Completed,
    Failed,
    Cancelled,
}

/// <summary>Phases of the destination side.</summary>
public enum DestinationPhase
{
    Handshake,
    Receiving,
    Switchover,
    PostCopy,

    /// <summary>The source was lost after the resume: the VM keeps every page it has and waits for the source to reconnect.</summary>
    Paused,
    Verifying,
    Completed,
    Failed,
}

/// <summary>A live view of a migration for progress bars (read from any thread).</summary>
public sealed class MigrationProgress
{
    public volatile SourcePhase Phase;
    public volatile int Round;
    public long BytesSent;
    public long PagesRemaining;
    public long PagesTotal;
    public long FaultRequests;
    public double ElapsedMs;
    public double RateBitsPerSecond;

    /// <summary>How long the destination has been silent, while that is longer than two heartbeat intervals (a stall); 0 otherwise.</summary>
    public double PeerSilentMs;

    /// <summary>Why the migration is recovering (the link failure), while it is.</summary>
    public volatile string? Detail;

    /// <summary>Reconnections so far after a lost link.</summary>
    public volatile int Recoveries;
}
