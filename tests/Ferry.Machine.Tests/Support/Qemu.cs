using System.Diagnostics;

namespace Ferry.Machine.Tests.Support;

/// <summary>What QEMU printed and how it exited.</summary>
internal sealed record QemuResult(int ExitCode, byte[] Stdout, string Stderr);

/// <summary>Runs an ELF under qemu-system-riscv64 (virt, 256 MiB, no firmware), the reference for differential tests.</summary>
internal static class Qemu
{
    public const string Executable = "qemu-system-riscv64";

    private static readonly Lazy<string?> ExecutablePath = new(Find);

    public static bool Available => ExecutablePath.Value is not null;

    public const string SkipReason = Executable + " is not on PATH (CI installs it): differential test skipped";

    public static QemuResult Run(ReadOnlySpan<byte> elf, TimeSpan timeout)
    {
        string file = Path.Combine(Path.GetTempPath(), $"ferry-qemu-{Guid.NewGuid():N}.elf");
        File.WriteAllBytes(file, elf.ToArray());
        try
        {
            return RunWith(["-M", "virt", "-m", "256M", "-bios", "none", "-nographic", "-kernel", file], timeout);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Runs QEMU with these arguments until it exits (a timeout kills it and throws).</summary>
    public static QemuResult RunWith(IEnumerable<string> arguments, TimeSpan timeout)
    {
        string exe = ExecutablePath.Value ?? throw new InvalidOperationException(SkipReason);
        var start = new ProcessStartInfo(exe)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in arguments)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {exe}");
        process.StandardInput.Close();
        using var stdout = new MemoryStream();
        Task copy = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"QEMU did not finish within {timeout.TotalSeconds} s");
        }

        copy.Wait(TimeSpan.FromSeconds(10));
        return new QemuResult(process.ExitCode, stdout.ToArray(), stderr.Wait(TimeSpan.FromSeconds(10)) ? stderr.Result : "");
    }

    private static string? Find()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, Executable);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}

/// <summary>A fact that needs QEMU: skipped with a clear reason when qemu-system-riscv64 is not installed.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public QemuFactAttribute()
    {
        if (!Qemu.Available)
        {
            Skip = Qemu.SkipReason;
        }
    }
}

/// <summary>A theory that needs QEMU (see <see cref="QemuFactAttribute"/>).</summary>
public sealed class QemuTheoryAttribute : TheoryAttribute
{
    public QemuTheoryAttribute(bool needsIsaTests = false)
    {
        if (!Qemu.Available)
        {
            Skip = Qemu.SkipReason;
        }
        else if (needsIsaTests && Repo.IsaTestNames.Count == 0)
        {
            Skip = IsaTheoryAttribute.NoTestsReason;
        }
    }
}

/// <summary>A theory over guests/isa/bin/*.elf: skipped while the ISA tests are not built.</summary>
public sealed class IsaTheoryAttribute : TheoryAttribute
{
    public const string NoTestsReason = "guests/isa/bin holds no ISA test ELFs (run make -C guests/isa)";

    public IsaTheoryAttribute()
    {
        if (Repo.IsaTestNames.Count == 0)
        {
            Skip = NoTestsReason;
        }
    }
}
