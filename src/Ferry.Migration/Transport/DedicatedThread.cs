using System.Runtime.InteropServices;

namespace Ferry.Migration.Transport;

/// <summary>
/// Threads of their own for the post-copy phase's loops (the fault path, the push and its
/// receiver): each blocks in the kernel on its socket instead of queueing continuations on the
/// shared thread pool, and each runs at a CPU priority chosen for its job. On a host with two
/// cores the destination's vCPU, its fault receiver and the push receiver compete with the
/// source's fault server and push; the source's push (bulk, latency-insensitive) runs at a lower
/// priority (a higher nice value, which any process may set) so that fault service and the guest
/// get the CPU first, while the push still fills the link whenever they idle.
/// </summary>
public static partial class DedicatedThread
{
    /// <summary>Nice value of the fault path's threads: the process's own.</summary>
    public const int FaultPathNice = 0;

    /// <summary>Nice value of the source's push: below the vCPU and the fault path.</summary>
    public const int BulkNice = 5;

    /// <summary>
    /// Nice value of work that only has to be done by the end of the move (the source's memory
    /// digest of the pause): it takes what CPU the push, the fault path and the guest leave.
    /// </summary>
    public const int BackgroundNice = 19;

    /// <summary>
    /// Nice value of the destination's push receiver: the guest's own. Below it, a guest that
    /// runs flat out starves the receiver, the push backs up and the whole move takes longer
    /// (measured: kvstore's total 4 % longer at nice 5).
    /// </summary>
    public const int ReceiverNice = 0;

    /// <summary>
    /// The scheduler slice asked for the fault path's threads (and a destination vCPU waiting
    /// on a fault): Linux's EEVDF scheduler lets a waking thread with a shorter slice preempt
    /// the running one at once, where one with the default slice may wait until the running
    /// thread has used up its own (milliseconds). Any process may ask for it (Linux 6.12+).
    /// </summary>
    public static readonly TimeSpan LatencySlice = TimeSpan.FromMicroseconds(100);

    /// <summary>
    /// Whether the fault path may run SCHED_FIFO where the process is allowed to (root, or
    /// CAP_SYS_NICE, or an RLIMIT_RTPRIO of 1 or more); <c>ferry host --no-realtime</c> turns it off.
    /// </summary>
    public static bool RealtimeFaultPath { get; set; } = true;

    /// <summary>
    /// Gives a fault-path thread the CPU first: SCHED_FIFO at priority 1 where allowed and
    /// <see cref="RealtimeFaultPath"/>, otherwise the <see cref="LatencySlice"/>. A real-time
    /// thread preempts every ordinary one the moment it wakes, so its own work must be short
    /// and end in a block (these threads block on their sockets between faults, and the
    /// kernel's real-time throttling leaves ordinary threads 5 % of each CPU regardless).
    /// </summary>
    public static FaultPathScheduling Prioritize(int tid)
    {
        if (RealtimeFaultPath && SetRealtime(tid))
        {
            return FaultPathScheduling.Realtime;
        }

        return SetSlice(tid, LatencySlice) ? FaultPathScheduling.Slice : FaultPathScheduling.Default;
    }

    /// <summary>Runs <paramref name="body"/> on a new background thread at <paramref name="nice"/>; the task ends with it.</summary>
    public static Task Start(string name, int nice, Action body) => Start(name, nice, () =>
    {
        body();
        return true;
    });

    /// <summary>Runs <paramref name="body"/> on a new background thread at <paramref name="nice"/>; the task ends with its result.</summary>
    public static Task<T> Start<T>(string name, int nice, Func<T> body)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            SetNice(nice);
            try
            {
                done.TrySetResult(body());
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        })
        {
            IsBackground = true,
            Name = name,
        };
        thread.Start();
        return done.Task;
    }

    /// <summary>
    /// Sets the calling thread's nice value (Linux: per thread). Best effort: raising it is
    /// always allowed; lowering it below the process's needs privilege and is skipped.
    /// </summary>
    public static void SetNice(int nice)
    {
        if (nice == 0 || !OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = SetPriority(0 /* PRIO_PROCESS */, GetTid(), nice);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    /// <summary>The calling thread's kernel id (Linux), or 0.</summary>
    public static int CurrentThreadId
    {
        get
        {
            if (!OperatingSystem.IsLinux())
            {
                return 0;
            }

            try
            {
                return GetTid();
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                return 0;
            }
        }
    }

    /// <summary>
    /// Asks the scheduler for a slice of <paramref name="slice"/> for thread <paramref name="tid"/>
    /// (zero: the default again), keeping its policy and nice value. Best effort: false where the
    /// kernel does not support it.
    /// </summary>
    public static unsafe bool SetSlice(int tid, TimeSpan slice)
    {
        if (tid == 0 || !OperatingSystem.IsLinux() || SchedSetAttrSyscall() is not long number)
        {
            return false;
        }

        try
        {
            int nice = GetPriority(0 /* PRIO_PROCESS */, tid);
            var attr = new SchedAttr
            {
                Size = (uint)sizeof(SchedAttr),
                Policy = 0, // SCHED_OTHER
                Nice = nice,
                Runtime = (ulong)(slice.Ticks * 100),
            };
            return Syscall(number, tid, &attr, 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>SCHED_FIFO at priority 1 for thread <paramref name="tid"/>; false without the privilege (or off Linux).</summary>
    public static unsafe bool SetRealtime(int tid)
    {
        if (tid == 0 || !OperatingSystem.IsLinux() || SchedSetAttrSyscall() is not long number)
        {
            return false;
        }

        try
        {
            var attr = new SchedAttr
            {
                Size = (uint)sizeof(SchedAttr),
                Policy = 1, // SCHED_FIFO
                Priority = 1,
            };
            return Syscall(number, tid, &attr, 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Thread <paramref name="tid"/>'s scheduling policy (0 SCHED_OTHER, 1 SCHED_FIFO, ...), or -1 where it cannot be read.</summary>
    public static int SchedulerPolicy(int tid)
    {
        if (tid == 0 || !OperatingSystem.IsLinux())
        {
            return -1;
        }

        try
        {
            return SchedGetScheduler(tid);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return -1;
        }
    }

    private static long? SchedSetAttrSyscall() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 314,
        Architecture.Arm64 => 274,
        _ => null,
    };

    /// <summary>struct sched_attr, version 0 (48 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct SchedAttr
    {
        public uint Size;
        public uint Policy;
        public ulong Flags;
        public int Nice;
        public uint Priority;
        public ulong Runtime;
        public ulong Deadline;
        public ulong Period;
    }

    [LibraryImport("libc", EntryPoint = "sched_getscheduler")]
    private static partial int SchedGetScheduler(int pid);

    [LibraryImport("libc", EntryPoint = "syscall")]
    private static unsafe partial long Syscall(long number, int tid, SchedAttr* attr, uint flags);

    [LibraryImport("libc", EntryPoint = "getpriority")]
    private static partial int GetPriority(int which, int who);

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();
}

/// <summary>How the fault path's threads are scheduled (<see cref="DedicatedThread.Prioritize"/>); in JSON as default, slice, realtime.</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(Ferry.Migration.Metrics.KebabCaseEnumConverter<FaultPathScheduling>))]
public enum FaultPathScheduling
{
    /// <summary>The scheduler's defaults: neither of the others was allowed.</summary>
    Default,

    /// <summary>SCHED_OTHER with a short EEVDF slice (<see cref="DedicatedThread.LatencySlice"/>).</summary>
    Slice,

    /// <summary>SCHED_FIFO, priority 1.</summary>
    Realtime,
}
