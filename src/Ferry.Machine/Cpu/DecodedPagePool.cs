using System.Collections.Concurrent;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Cpu;

/// <summary>
/// The decoded-instruction arrays of code pages (32 KiB each), kept across the harts of a process.
/// A hart fills one for every page it runs code from; a VM just restored (a migration's
/// destination) fills hundreds of them within milliseconds of its resume. Allocated anew, they
/// are megabytes of young objects that all survive: the garbage collections they bring copy them
/// while every thread of the process stands still (1 to 7.5 ms measured after kvserver resumes,
/// docs/results.md). A disposed hart gives its arrays back, cleared, and the next hart takes them.
/// </summary>
public static class DecodedPagePool
{
    /// <summary>Slots of a page's array: one per 2-byte instruction boundary.</summary>
    public const int Slots = GuestMemory.PageSize / 2;

    /// <summary>Arrays kept at most (64 MiB).</summary>
    public const int Capacity = 2048;

    private static readonly ConcurrentStack<DecodedInsn[]> Free = new();
    private static int _count;

    /// <summary>A cleared array (every slot undecoded): a pooled one, or a new one.</summary>
    public static DecodedInsn[] Rent()
    {
        if (Free.TryPop(out DecodedInsn[]? page))
        {
            Interlocked.Decrement(ref _count);
            return page;
        }

        return new DecodedInsn[Slots];
    }

    /// <summary>
    /// Gives back an array its hart will never read or write again (the hart is disposed); it is
    /// cleared here, off the next hart's path.
    /// </summary>
    public static void Return(DecodedInsn[] page)
    {
        if (page.Length != Slots || Interlocked.Increment(ref _count) > Capacity)
        {
            if (page.Length == Slots)
            {
                Interlocked.Decrement(ref _count);
            }

            return;
        }

        Array.Clear(page);
        Free.Push(page);
    }
}
