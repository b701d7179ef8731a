using BenchmarkDotNet.Attributes;
using Ferry.Benchmarks.Common;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// The baseline: the same compute image under QEMU's TCG (qemu-system-riscv64 -M virt -m 256M
/// -bios none -nographic -kernel compute.elf), one process per invocation.
///
///   QemuLoop     iterations = <see cref="Iterations"/> (2 G loop instructions, ~0.7 s under QEMU here). Declared as
///                <see cref="LoopInstructions"/> operations, so Mean is roughly ns/instruction
///                including QEMU's start-up.
///   QemuStartup  the same image with iterations = 0 (start-up, setup, printing, exit).
///
/// QEMU's MIPS for the loop = (exact instructions of the big run - exact instructions of the
/// empty run, counted by Ferry on the same images) / (QemuLoop time - QemuStartup time);
/// Program prints it next to Ferry's (the "Ferry vs QEMU" table). Left out of the run when
/// QEMU is not on PATH.
/// </summary>
public class QemuBaselineBenchmarks
{
    public const long Iterations = 100_000_000;
    public const int LoopInstructions = (int)(20 * Iterations);

    private string _big = "";
    private string _empty = "";

    [Params(0, 1)]
    public int Kernel { get; set; }

    /// <summary>The compute image for <paramref name="kernel"/> with <paramref name="iterations"/>, written to a temp file.</summary>
    internal static string WriteImage(int kernel, long iterations)
    {
        string file = Path.Combine(Path.GetTempPath(), $"ferry-bench-compute-k{kernel}-i{iterations}-{Environment.ProcessId}.elf");
        File.WriteAllBytes(file, Guests.Image("compute", ("kernel", (ulong)kernel), ("iterations", (ulong)iterations)).Bytes.ToArray());
        return file;
    }

    [GlobalSetup]
    public void Setup()
    {
        if (!Qemu.Available)
        {
            throw new InvalidOperationException(Qemu.Executable + " is not on PATH");
        }

        _big = WriteImage(Kernel, Iterations);
        _empty = WriteImage(Kernel, 0);
        foreach (string file in new[] { _empty, _big })
        {
            (int code, string output) = Qemu.Run(file, TimeSpan.FromMinutes(2));
            if (code != 0 || !output.Contains($"compute kernel {Kernel} result", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"QEMU run of {file} failed (exit {code}):\n{output}");
            }

            Console.WriteLine($"// QEMU {Path.GetFileName(file)}: {output.Trim().Replace('\n', ' ')}");
        }
    }

    [Benchmark(OperationsPerInvoke = LoopInstructions)]
    public int QemuLoop() => Check(Qemu.Run(_big, TimeSpan.FromMinutes(2)).ExitCode);

    [Benchmark]
    public int QemuStartup() => Check(Qemu.Run(_empty, TimeSpan.FromMinutes(1)).ExitCode);

    [GlobalCleanup]
    public void Cleanup()
    {
        File.Delete(_big);
        File.Delete(_empty);
    }

    private static int Check(int exitCode) => exitCode == 0 ? 0 : throw new InvalidOperationException($"QEMU exited {exitCode}");
}
