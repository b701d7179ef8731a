using System.Runtime;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Keeps .NET's garbage collector out of the windows where a migrated VM's clients wait: the
/// source's pause, and the destination from its handshake to its final report. A
/// collection stops every thread of the process, the vCPU and the fault path included; in the
/// migration reports (<c>runtime</c>) they were young collections of 1 to 21.5 ms, a few in
/// every dozen kvserver moves, now and then one inside a source's pause (12.9 ms).
/// <para>The runtime has one no-GC region per process (<see cref="GC.TryStartNoGCRegion(long)"/>):
/// a holder starts it, with <see cref="Budget"/> bytes of allocation, unless it is in one
/// already, and the last one ends it. Starting it may collect first, which is why the source enters while its VM still runs.
/// A process that allocates past the budget leaves the region at its next collection, as it
/// would have collected anyway; so does an induced collection.</para>
/// </summary>
public static class GcQuiet
{
    /// <summary>Allocation the region allows: a destination allocated 1.2 to 2.1 MB from its resume to its final report (kvserver).</summary>
    public const long Budget = 32L << 20;

    private static readonly object Gate = new();
    private static int _holders;

    /// <summary>Enters the quiet window; disposing the result leaves it.</summary>
    public static IDisposable Enter()
    {
        lock (Gate)
        {
            _holders++;
            if (GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) // (also when another holder's region has ended: its budget was spent)
            {
                try
                {
                    _ = GC.TryStartNoGCRegion(Budget); // (false: the runtime collected and could still not promise the budget)
                }
                catch (Exception e) when (e is InvalidOperationException or ArgumentOutOfRangeException)
                {
                    // (in a region already, or a budget this runtime does not allow: collections as before)
                }
            }
        }

        return new Lease();
    }

    private static void Leave()
    {
        lock (Gate)
        {
            if (--_holders == 0 && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion)
            {
                try
                {
                    GC.EndNoGCRegion();
                }
                catch (InvalidOperationException)
                {
                    // (the region ended already: its budget was spent, or a collection was induced)
                }
            }
        }
    }

    private sealed class Lease : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                Leave();
            }
        }
    }
}
