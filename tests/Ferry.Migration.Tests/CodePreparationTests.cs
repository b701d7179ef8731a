using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>The host's start-up compilation of the migration's code (<see cref="CodePreparation"/>).</summary>
public class CodePreparationTests
{
    [Fact]
    public void Every_fault_path_type_is_in_scope()
    {
        HashSet<Type> types = [.. CodePreparation.TypesInScope()];
        foreach (Type t in new[] { typeof(FaultServer), typeof(RemotePager), typeof(PrepageWindow), typeof(PageSender), typeof(PushQueue), typeof(FrameChannel), typeof(SocketConnectionStream), typeof(LinkShaper), typeof(SourceMigration), typeof(DestinationMigration), typeof(Ferry.Machine.Memory.GuestMemory) })
        {
            Assert.Contains(t, types);
        }

        Assert.DoesNotContain(typeof(Ferry.Machine.Cpu.Hart), types); // (the hart's own code is compiled by the warm-up boot)
    }

    /// <summary>
    /// A prepared method is not compiled again at its first call; an unprepared one is, which shows
    /// the runtime's JIT events reach the listener (so the first assertion can fail).
    /// </summary>
    [Fact]
    public async Task A_prepared_method_is_not_compiled_at_its_first_call()
    {
        using var jit = new JitListener();
        Assert.True(CodePreparation.Prepare([typeof(Prepared)]) >= 1);
        Assert.True(await jit.SeenAsync("+" + nameof(Prepared), TimeSpan.FromSeconds(10)), "the preparation's own compilation was never seen");
        jit.Compiled.Clear();
        Assert.Equal(3, Prepared.Sum(1, 2));
        Assert.Equal(3, Unprepared.Sum(1, 2));
        Assert.True(await jit.SeenAsync("+" + nameof(Unprepared), TimeSpan.FromSeconds(10)), "the unprepared method's compilation was never seen");
        Assert.DoesNotContain(jit.Compiled, name => name.Contains("+" + nameof(Prepared) + "::", StringComparison.Ordinal));
    }

    /// <summary>
    /// The methods a thread runs for a whole move (and the pause's walk over every page) are
    /// compiled optimized at once (AggressiveOptimization): left to tiering, their loops were
    /// compiled on stack replacement in the middle of a host's first move, on the fault path's own
    /// threads (FaultServer.RequestLoop, the fault-reply receiver) and in the pause (the digest).
    /// </summary>
    [Theory]
    [InlineData(typeof(FaultServer), "RequestLoop")]
    [InlineData(typeof(DestinationMigration), "ReceiveFaultReplies")]
    [InlineData(typeof(DestinationMigration), "ReceivePush")]
    [InlineData(typeof(DestinationMigration), "ReceiveBulk")]
    [InlineData(typeof(BackgroundPush), "Run")]
    [InlineData(typeof(StripedSender), "RunLane")]
    [InlineData(typeof(PageHash), "OfMemory")]
    public void A_method_that_runs_a_whole_move_is_compiled_optimized_up_front(Type type, string name)
    {
        System.Reflection.MethodInfo method = type.GetMethod(name, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Static)!;
        Assert.True((method.MethodImplementationFlags & System.Reflection.MethodImplAttributes.AggressiveOptimization) != 0, $"{type.Name}.{name} is left to tiering");
    }

    /// <summary>The report's JIT figures count what the JIT really compiled (a new dynamic method here).</summary>
    [Fact]
    public void Jit_activity_counts_a_compilation()
    {
        Ferry.Migration.Metrics.JitMark mark = Ferry.Migration.Metrics.JitActivity.Mark();
        var method = new System.Reflection.Emit.DynamicMethod("counted", typeof(int), [typeof(int)]);
        System.Reflection.Emit.ILGenerator il = method.GetILGenerator();
        il.Emit(System.Reflection.Emit.OpCodes.Ldarg_0);
        il.Emit(System.Reflection.Emit.OpCodes.Ldc_I4_1);
        il.Emit(System.Reflection.Emit.OpCodes.Add);
        il.Emit(System.Reflection.Emit.OpCodes.Ret);
        Assert.Equal(42, method.CreateDelegate<Func<int, int>>()(41));
        Ferry.Migration.Metrics.JitActivity jit = Ferry.Migration.Metrics.JitActivity.Since(mark);
        Assert.True(jit.Methods >= 1, $"{jit.Methods} methods compiled");
        Assert.True(jit.Ms >= 0);
    }

    private static class Prepared
    {
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static int Sum(int a, int b) => a + b;
    }

    private static class Unprepared
    {
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static int Sum(int a, int b) => a + b;
    }

    /// <summary>The runtime's MethodJittingStarted events (namespace::name), from this process.</summary>
    private sealed class JitListener : EventListener
    {
        public ConcurrentQueue<string> Compiled { get; } = new();

        public async Task<bool> SeenAsync(string type, TimeSpan timeout)
        {
            var wait = System.Diagnostics.Stopwatch.StartNew();
            while (wait.Elapsed < timeout)
            {
                if (Compiled.Any(name => name.Contains(type + "::", StringComparison.Ordinal)))
                {
                    return true;
                }

                await Task.Delay(20);
            }

            return false;
        }

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
            {
                EnableEvents(eventSource, EventLevel.Verbose, (EventKeywords)0x10); // JIT
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs e)
        {
            if (e.EventId == 145 && e.Payload is { Count: > 5 } p)
            {
                Compiled.Enqueue($"{p[4]}::{p[5]}");
            }
        }
    }
}
