using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Tests that measure how long something takes against a deadline (the failure matrix's
/// detection times), or that starve the process's thread pool: they run alone, after the
/// others, so that neither the rest of the suite's load skews their clocks nor they skew it.
/// (Alone, the matrix's stalls are detected in 1.66-2.05 s of a 2 s deadline; run beside the
/// whole suite on a 2-core CI machine, twice in 2.7-3.3 s.)
/// </summary>
[CollectionDefinition(nameof(TimingSensitive), DisableParallelization = true)]
public sealed class TimingSensitive;
