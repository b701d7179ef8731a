using System.Runtime.InteropServices;

namespace Ferry.Migration.Transport;

/// <summary>
/// Threads of their own for the post-copy phase's loops (the fault path, the push and its
/// receiver): each blocks in the kernel on its socket instead of queueing continuations on the
/// shared thread pool, and each runs at a CPU priority chosen for its job. On a host with two
/// cores the destination's vCPU, its fault receiver and the push receiver compete with the
/// source's fault server and push; the push (bulk, latency-insensitive) runs at a lower priority
/// (a higher nice value, which any process may set) so that fault service and the guest get
/// the CPU first, while the push still fills the link whenever they idle.
/// </summary>
public static partial class DedicatedThread
{
    /// <summary>Nice value of the fault path's threads: the process's own.</summary>
    public const int FaultPathNice = 0;

    /// <summary>Nice value of the push and its receiver: below the vCPU and the fault path.</summary>
    public const int BulkNice = 5;

    /// <summary>Runs <paramref name="body"/> on a new background thread at <paramref name="nice"/>; the task ends with it.</summary>
    public static Task Start(string name, int nice, Action body)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            SetNice(nice);
            try
            {
                body();
                done.TrySetResult();
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

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();
}
