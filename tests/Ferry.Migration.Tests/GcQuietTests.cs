using System.Runtime;
using Ferry.Migration.Mechanisms;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>The no-GC window of a migration's pause and destination (<see cref="GcQuiet"/>). Not beside a test that induces collections (which end the region).</summary>
[Collection(nameof(RuntimeGc))]
public class GcQuietTests
{
    [Fact]
    public void Inside_the_window_the_process_is_in_a_no_gc_region_and_a_nested_leave_keeps_it()
    {
        using (GcQuiet.Enter())
        {
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            IDisposable inner = GcQuiet.Enter();
            inner.Dispose();
            inner.Dispose(); // (a lease leaves once)
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            byte[][] allocated = [.. Enumerable.Range(0, 1024).Select(_ => new byte[1024])]; // 1 MiB: far inside the budget
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            GC.KeepAlive(allocated);
        }
    }
}

/// <summary>Tests that depend on the process's collections: they do not run beside each other.</summary>
[CollectionDefinition(nameof(RuntimeGc))]
public sealed class RuntimeGc;
