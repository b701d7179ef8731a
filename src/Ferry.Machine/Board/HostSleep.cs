using System.Runtime.InteropServices;

namespace Ferry.Machine.Board;

/// <summary>
/// A sleep shorter than a millisecond. .NET's waits count whole milliseconds (a wait of 0.9 ms
/// is a wait of 0 ms): a hart idle until a timer less than a millisecond away would otherwise
/// poll the clock on its core until then, and a guest that sleeps in steps of 125 µs (dirty-slow,
/// or a kernel's high-resolution timers) kept a whole core busy doing nothing, the core the
/// migration's push, its receiver and the fault path needed on a small host.
/// </summary>
internal static unsafe partial class HostSleep
{
    /// <summary>Sleeps for about <paramref name="duration"/> (Linux: the kernel's high-resolution timer); an interrupt of the sleep just ends it early.</summary>
    public static void For(TimeSpan duration)
    {
        if (duration <= TimeSpan.Zero)
        {
            return;
        }

        if (OperatingSystem.IsLinux())
        {
            var request = new TimeSpec
            {
                Seconds = duration.Ticks / TimeSpan.TicksPerSecond,
                Nanoseconds = duration.Ticks % TimeSpan.TicksPerSecond * 100,
            };
            try
            {
                _ = ClockNanosleep(ClockMonotonic, 0, &request, null);
                return;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
            }
        }

        Thread.Sleep(1); // elsewhere: a millisecond, late rather than busy
    }

    private const int ClockMonotonic = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, TimeSpec* request, TimeSpec* remain);
}
