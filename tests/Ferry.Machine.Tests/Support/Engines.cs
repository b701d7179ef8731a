using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Machine.Tests.Support;

/// <summary>
/// Which engine a test machine runs. Null means the suite's choice: FERRY_TEST_ENGINE
/// (interpreter or translator) when set, else the hart's default as in production (the
/// translator, threshold 4,096, in the background). A machine told to translate translates
/// every region on its first entry (threshold 1) on the hart's own thread, so that every block
/// the guest reaches runs as translated code, whatever the thread timing; quick blocks that retire
/// <see cref="PromotionThreshold"/> instructions are compiled again optimized, so hot code runs
/// in the optimized tier.
/// </summary>
internal static class Engines
{
    /// <summary>Quick blocks that retired this many instructions are compiled again optimized, so both tiers run in every test.</summary>
    public const long PromotionThreshold = 256;

    public static readonly ExecutionEngine[] Both = [ExecutionEngine.Interpreter, ExecutionEngine.Translator];

    public static ExecutionEngine? SuiteDefault =>
        Environment.GetEnvironmentVariable("FERRY_TEST_ENGINE") is { Length: > 0 } name
            ? Enum.Parse<ExecutionEngine>(name, ignoreCase: true)
            : null;

    public static VirtMachine Use(VirtMachine machine, ExecutionEngine? engine)
    {
        if ((engine ?? SuiteDefault) is { } e)
        {
            machine.Hart.Engine = e;
            if (e == ExecutionEngine.Translator)
            {
                machine.Hart.TranslationThreshold = 1;
                machine.Hart.PromotionThreshold = PromotionThreshold;
                machine.Hart.TranslateInBackground = false;
            }
        }

        return machine;
    }
}
