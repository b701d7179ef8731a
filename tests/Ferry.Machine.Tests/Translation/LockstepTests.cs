using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Cpu.Translation;
using Ferry.Machine.Memory;
using Ferry.Machine.State;
using Ferry.Machine.Tests.Guests;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Translation;

/// <summary>
/// The translator checked against the interpreter in lockstep: two machines on the same image,
/// one per engine (the translator translating every block on its first entry), run to the same
/// instruction counts in short random steps. After each step the CPU and device state, the
/// console and the page facts the migration reads (dirty, accessed, populated) must be equal;
/// every few steps both collect their dirty log and open an access window (which flush TLB
/// entries, so the translated stores and loads must mark the facts again exactly as the
/// interpreter's do), and RAM is compared by digest.
/// </summary>
public sealed class LockstepTests
{
    public static TheoryData<GuestCase> Guests => GuestCase.Data;

    [Theory]
    [MemberData(nameof(Guests))]
    public void Guest_UnderTheTranslator_MatchesTheInterpreter_AfterEveryStep(GuestCase c)
    {
        GuestImage image = GuestRunner.Load(c.Guest, c.Config);
        using VirtMachine reference = GuestRunner.NewMachine(image, engine: ExecutionEngine.Interpreter);
        using VirtMachine translated = GuestRunner.NewMachine(image, engine: ExecutionEngine.Translator);
        RunOutcome outcome = Lockstep(reference, translated, maxInstructions: 60_000_000, maxStep: 400, seed: 13);

        Assert.Equal(RunOutcome.GuestExited, outcome);
        Assert.Equal(c.Expected, System.Text.Encoding.ASCII.GetString(translated.Console.Read(0).Bytes));
        Assert.True(translated.Hart.TranslationStatistics.Blocks > 0, "the translator translated nothing");
    }

    [Fact]
    public void LinuxBoot_UnderTheTranslator_MatchesTheInterpreter_AfterEveryStep()
    {
        using VirtMachine reference = LinuxGuest.Boot(LinuxBoot.DefaultCommandLine, engine: ExecutionEngine.Interpreter);
        using VirtMachine translated = LinuxGuest.Boot(LinuxBoot.DefaultCommandLine, engine: ExecutionEngine.Translator);

        // Code reached 4 times: most of the boot's instructions, a few thousand regions to compile on a loaded machine.
        translated.Hart.TranslationThreshold = 4;
        Lockstep(reference, translated, maxInstructions: 27_000_000, maxStep: 20_000, seed: 7);

        Assert.Contains("ferry-init: ready", System.Text.Encoding.ASCII.GetString(translated.Console.Read(0).Bytes), StringComparison.Ordinal);
        TranslationStatistics t = translated.Hart.TranslationStatistics;
        Assert.True(t.Blocks > 1000, $"only {t.Blocks} blocks translated");
        Assert.True(t.Promoted > 100, $"only {t.Promoted} blocks promoted to the optimized tier");
    }

    [Fact]
    public void LinuxBoot_WithTranslationsSharedByAnEarlierBoot_MatchesTheInterpreter_AfterEveryStep()
    {
        // What a host does: its start-up boot fills the process's cache, its VMs take from it.
        var cache = new TranslationCache();
        Assert.True(LinuxWarmUp.Boot(LinuxGuest.Files(LinuxBoot.DefaultCommandLine + " ferry.workload=idle"), cache).Ready);
        Assert.True(cache.Count > 100, $"the warm-up boot left {cache.Count} translations");

        using VirtMachine reference = LinuxGuest.Boot(LinuxBoot.DefaultCommandLine, engine: ExecutionEngine.Interpreter);
        using VirtMachine translated = LinuxGuest.Boot(LinuxBoot.DefaultCommandLine, engine: ExecutionEngine.Translator);
        translated.Hart.TranslationThreshold = Hart.DefaultTranslationThreshold;
        translated.Hart.SharedTranslations = cache;
        Lockstep(reference, translated, maxInstructions: 27_000_000, maxStep: 20_000, seed: 11);

        Assert.Contains("ferry-init: ready", System.Text.Encoding.ASCII.GetString(translated.Console.Read(0).Bytes), StringComparison.Ordinal);
        TranslationStatistics t = translated.Hart.TranslationStatistics;
        Assert.True(t.Shared > 100, $"only {t.Shared} blocks taken from the cache: {t}");
    }

    [Fact]
    public void Kvstore_WithBackgroundTranslation_MatchesTheInterpreter()
    {
        // Production mode: regions are compiled on the translator's thread and installed between runs.
        GuestCase c = GuestCase.All.Single(g => g.Id == "kvstore");
        GuestImage image = GuestRunner.Load(c.Guest, c.Config);
        using VirtMachine reference = GuestRunner.NewMachine(image, engine: ExecutionEngine.Interpreter);
        using VirtMachine translated = GuestRunner.NewMachine(image, engine: ExecutionEngine.Translator);
        translated.Hart.TranslateInBackground = true;
        translated.Hart.TranslationThreshold = Hart.DefaultTranslationThreshold;
        Assert.Equal(RunOutcome.GuestExited, Lockstep(reference, translated, maxInstructions: 200_000_000, maxStep: 20_000, seed: 5));
        Assert.True(translated.Hart.TranslationStatistics.Blocks > 0, "no background translation was installed");
        Assert.True(translated.Hart.TranslationStatistics.Promoted > 0, "no block was promoted to the optimized tier in the background");
    }

    private static RunOutcome Lockstep(VirtMachine reference, VirtMachine translated, ulong maxInstructions, int maxStep, int seed)
    {
        var random = new Random(seed);
        var refLog = new PageBitmap(reference.Memory.PageCount);
        var trLog = new PageBitmap(translated.Memory.PageCount);
        ulong at = 0;
        for (int step = 1; ; step++)
        {
            // Mostly short steps (blocks near the step's end fall back to the interpreter), some long ones.
            at += (ulong)(step % 8 == 0 ? random.Next(1, maxStep * 50) : random.Next(1, maxStep));
            RunOutcome expected = GuestRunner.RunTo(reference, at);
            RunOutcome actual = GuestRunner.RunTo(translated, at);
            string where = $"step {step}, at {reference.Hart.InstructionsRetired} instructions, pc 0x{reference.Hart.Pc:x}";
            Assert.Equal(expected, actual);
            Assert.True(StateCodec.Encode(reference.SaveState()).AsSpan().SequenceEqual(StateCodec.Encode(translated.SaveState())),
                $"CPU or device state differs at {where}: translator pc 0x{translated.Hart.Pc:x}, retired {translated.Hart.InstructionsRetired}");
            AssertSameFacts(reference.Memory, translated.Memory, where);

            if (step % 16 == 0)
            {
                reference.Memory.CollectDirtyLog(refLog);
                translated.Memory.CollectDirtyLog(trLog);
                Assert.True(refLog.Words.SequenceEqual(trLog.Words), $"collected dirty logs differ at {where}");
                reference.Memory.StartAccessWindow(refLog);
                translated.Memory.StartAccessWindow(trLog);
                Assert.True(refLog.Words.SequenceEqual(trLog.Words), $"access windows differ at {where}");
                Assert.Equal(StateDigest.MemoryDigest(reference.Memory), StateDigest.MemoryDigest(translated.Memory));
            }

            if (expected != RunOutcome.InstructionLimit || at >= maxInstructions)
            {
                Assert.Equal(StateDigest.Compute(reference), StateDigest.Compute(translated));
                Assert.Equal(reference.Console.Read(0).Bytes, translated.Console.Read(0).Bytes);
                return expected;
            }
        }
    }

    private static void AssertSameFacts(GuestMemory a, GuestMemory b, string where)
    {
        Assert.True(a.Dirty.Words.SequenceEqual(b.Dirty.Words), $"dirty pages differ at {where}");
        Assert.True(a.Accessed.Words.SequenceEqual(b.Accessed.Words), $"accessed pages differ at {where}");
        Assert.True(a.Populated.Words.SequenceEqual(b.Populated.Words), $"populated pages differ at {where}");
    }
}
