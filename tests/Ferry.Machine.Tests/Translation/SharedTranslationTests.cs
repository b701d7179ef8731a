using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Cpu.Translation;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Translation;

/// <summary>
/// Translations shared by the harts of a process (<see cref="TranslationCache"/>): taken only where
/// the hart's own page holds the same instructions, with the interpreter's results.
/// </summary>
public sealed class SharedTranslationTests
{
    /// <summary>A loop that adds <paramref name="step"/> to a0 100 times, at the same addresses whatever the step.</summary>
    private static ProgramBuilder Loop(int step)
    {
        ProgramBuilder p = Rig.NewProgram();
        var loop = p.NewLabel();
        p.Li(R.A0, 0).Li(R.T1, 100);
        p.Bind(loop);
        p.Emit(Asm.Addi(R.A0, R.A0, step));
        p.Emit(Asm.Addi(R.T1, R.T1, -1));
        p.Emit(loop, off => Asm.Bne(R.T1, R.Zero, off));
        p.Exit();
        return p;
    }

    private static (ulong A0, TranslationStatistics Stats) Run(int step, TranslationCache cache)
    {
        using var rig = new Rig();
        Engines.Use(rig.Machine, ExecutionEngine.Translator);
        rig.Hart.SharedTranslations = cache;
        rig.Load(Loop(step)).RunToExit();
        return (rig.X(R.A0), rig.Hart.TranslationStatistics);
    }

    [Fact]
    public void A_second_hart_installs_what_the_first_compiled_and_computes_the_same()
    {
        var cache = new TranslationCache();
        (ulong first, TranslationStatistics a) = Run(1, cache);
        Assert.Equal(100UL, first);
        Assert.True(a.Blocks > 0 && a.Shared == 0, $"the first hart should compile: {a}");
        Assert.True(cache.Count > 0, "the first hart left nothing in the cache");

        (ulong second, TranslationStatistics b) = Run(1, cache);
        Assert.Equal(100UL, second);
        Assert.True(b.Shared > 0, $"the second hart compiled what the first had: {b}");
        Assert.True(b.Blocks < a.Blocks, $"the second hart compiled as much as the first: {a} then {b}");
    }

    [Fact]
    public void Different_instructions_at_the_same_address_are_never_taken_from_the_cache()
    {
        var cache = new TranslationCache();
        Assert.Equal(100UL, Run(1, cache).A0);
        long missesBefore = cache.Misses;

        // Same addresses, the loop's add is addi a0, a0, 2: the cached loop must not run.
        (ulong a0, TranslationStatistics t) = Run(2, cache);
        Assert.Equal(200UL, a0);
        Assert.True(cache.Misses > missesBefore, "the differing loop was not looked up and refused");
        Assert.True(t.Blocks > 0, $"the differing loop was not compiled: {t}");
    }

    [Fact]
    public void The_cache_keeps_no_more_than_its_capacity()
    {
        var cache = new TranslationCache(capacity: 1);
        Run(1, cache);
        Assert.Equal(1, cache.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TranslationCache(capacity: 0));
    }

    [Fact]
    public void A_shared_block_is_dropped_with_its_page_when_the_page_is_written()
    {
        var cache = new TranslationCache();
        Run(1, cache);
        using var rig = new Rig();
        Engines.Use(rig.Machine, ExecutionEngine.Translator);
        rig.Hart.SharedTranslations = cache;
        rig.Load(Loop(1)).RunToExit();
        Assert.True(rig.Hart.TranslationStatistics.Shared > 0);
        Assert.True(rig.Hart.TranslationStatistics.CachedBlocks > 0);
        for (int page = 0; page < rig.Machine.Memory.PageCount; page++)
        {
            rig.Machine.Memory.NoteWrite(page);
        }

        Assert.Equal(0, rig.Hart.TranslationStatistics.CachedBlocks);
    }
}
