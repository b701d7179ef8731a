using System.Runtime.InteropServices;

namespace Ferry.Machine.Tests.Support;

/// <summary>The calling thread's CPU time (Linux: CLOCK_THREAD_CPUTIME_ID), in TimeSpan ticks.</summary>
internal static partial class ThreadCpu
{
    public static long Ticks()
    {
        Assert.True(OperatingSystem.IsLinux(), "thread CPU time is read on Linux only");
        Assert.Equal(0, ClockGetTime(3 /* CLOCK_THREAD_CPUTIME_ID */, out TimeSpec t));
        return (t.Seconds * TimeSpan.TicksPerSecond) + (t.Nanoseconds / 100);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);
}
