using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Translation;

/// <summary>What the translator must keep of the interpreter's contract: code coherence, dropped translations, exact budgets.</summary>
public sealed class TranslatorTests
{
    /// <summary>
    /// A loop runs 100 times adding 1, then patches its own add to add 2 (a store to its code
    /// page, then fence.i) and runs 100 times again: 300 only if the store dropped the loop's translation.
    /// </summary>
    [Theory]
    [InlineData(ExecutionEngine.Interpreter, 0L)]
    [InlineData(ExecutionEngine.Translator, long.MaxValue)]
    [InlineData(ExecutionEngine.Translator, 1L)]
    public void SelfModifyingLoop_RunsItsNewCode(ExecutionEngine engine, long promotion)
    {
        // promotion: after how many instructions the quick translation is compiled again optimized
        // (never: the quick tier's code is patched; at once: the optimized tier's).
        using var rig = new Rig();
        Engines.Use(rig.Machine, engine);
        if (engine == ExecutionEngine.Translator)
        {
            rig.Hart.PromotionThreshold = promotion;
        }

        ProgramBuilder p = Rig.NewProgram();
        var loop = p.NewLabel();
        var target = p.NewLabel();
        var done = p.NewLabel();
        p.Li(R.A0, 0).Li(R.S1, 0);
        p.Bind(loop);
        p.Li(R.T1, 100);
        var body = p.Mark();
        p.Bind(target);
        p.Emit(Asm.Addi(R.A0, R.A0, 1));
        p.Emit(Asm.Addi(R.T1, R.T1, -1));
        p.Emit(body, off => Asm.Bne(R.T1, R.Zero, off));
        p.Emit(done, off => Asm.Bne(R.S1, R.Zero, off));
        p.Li(R.S1, 1);
        p.Li(R.T2, (ulong)Asm.Addi(R.A0, R.A0, 2));
        p.La(R.T3, target);
        p.Emit(Asm.Sw(R.T2, R.T3, 0));
        p.Emit(Asm.FenceI());
        p.J(loop);
        p.Bind(done);
        p.Exit();
        rig.Load(p).RunToExit();

        Assert.Equal(300UL, rig.X(R.A0));
        if (engine == ExecutionEngine.Translator)
        {
            TranslationStatistics t = rig.Hart.TranslationStatistics;
            if (promotion == 1)
            {
                Assert.True(t.Promoted > 0, $"the loop was not promoted to the optimized tier: {t}");
            }
            else
            {
                Assert.True(t.Blocks > t.CachedBlocks, $"no translation was dropped: {t}");
            }
        }
    }

    [Fact]
    public void RestoringState_DropsEveryTranslation()
    {
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("compute", ("iterations", 2000)), engine: ExecutionEngine.Translator);
        GuestRunner.RunTo(m, 20_000);
        Assert.True(m.Hart.TranslationStatistics.CachedBlocks > 0);
        m.RestoreState(m.SaveState());
        Assert.Equal(0, m.Hart.TranslationStatistics.CachedBlocks);
    }

    [Fact]
    public void WritingACodePageFromOutside_DropsItsTranslations()
    {
        // The loader, a device or a migration writing a page (NoteWrite) drops what was translated from it.
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("compute", ("iterations", 2000)), engine: ExecutionEngine.Translator);
        GuestRunner.RunTo(m, 20_000);
        int before = m.Hart.TranslationStatistics.CachedBlocks;
        Assert.True(before > 0);
        for (int page = 0; page < m.Memory.PageCount; page++)
        {
            m.Memory.NoteWrite(page);
        }

        Assert.Equal(0, m.Hart.TranslationStatistics.CachedBlocks);
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(long.MaxValue)]
    public void TranslatedRun_StopsExactlyAtEveryBudget(long promotion)
    {
        // Runs of every length from 1 to 300 instructions end where the interpreter's do, never past
        // them, in the optimized tier (promoted after the first pass) and in the quick tier (never promoted).
        using VirtMachine m = GuestRunner.NewMachine(GuestRunner.Load("compute", ("iterations", 5000)), engine: ExecutionEngine.Translator);
        m.Hart.PromotionThreshold = promotion;
        ulong at = 0;
        for (ulong length = 1; length <= 300; length++)
        {
            at += length;
            Assert.Equal(RunOutcome.InstructionLimit, GuestRunner.RunTo(m, at));
            Assert.Equal(at, m.Hart.InstructionsRetired);
        }

        TranslationStatistics t = m.Hart.TranslationStatistics;
        Assert.True(t.Blocks > 0);
        Assert.Equal(promotion == 1, t.Promoted > 0);
    }
}
