using System.Diagnostics;

namespace Ferry.Benchmarks.Common;

/// <summary>Runs an ELF under qemu-system-riscv64 -M virt -m 256M -bios none -nographic (the reference TCG emulator).</summary>
internal static class Qemu
{
    public const string Executable = "qemu-system-riscv64";

    private static readonly Lazy<string?> ExecutablePath = new(Find);

    public static bool Available => ExecutablePath.Value is not null;

    public static string? Path => ExecutablePath.Value;

    public static string Version()
    {
        var psi = new ProcessStartInfo(ExecutablePath.Value ?? Executable, "--version") { RedirectStandardOutput = true, UseShellExecute = false };
        using Process p = Process.Start(psi)!;
        string first = p.StandardOutput.ReadLine() ?? "";
        p.WaitForExit();
        return first.Trim();
    }

    /// <summary>Boots <paramref name="elfPath"/>, waits for the guest to exit; returns exit code and console output.</summary>
    public static (int ExitCode, string Output) Run(string elfPath, TimeSpan timeout)
    {
        string exe = ExecutablePath.Value ?? throw new InvalidOperationException(Executable + " is not on PATH");
        var start = new ProcessStartInfo(exe)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { "-M", "virt", "-m", "256M", "-bios", "none", "-nographic", "-kernel", elfPath })
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {exe}");
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"QEMU did not finish within {timeout.TotalSeconds} s");
        }

        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    private static string? Find()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = System.IO.Path.Combine(dir, Executable);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
