using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Machine.Tests.Support;

/// <summary>
/// Which engine a test machine runs. Null means the suite's choice: FERRY_TEST_ENGINE
/// (interpreter or translator) when set, else the hart's default as in production (the
/// translator, threshold 4,096, in the background). A machine told to translate translates
/// every region on its first entry (threshold 1) on the hart's own thread, so that every block
/// the guest reaches runs as translated code, whatever the thread timing.
/// </summary>
internal static class Engines
{
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
                machine.Hart.TranslateInBackground = false;
            }
        }

        return machine;
    }
}
