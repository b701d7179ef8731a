using System.Diagnostics;
using System.Text;
using Ferry.Machine.Board;

namespace Ferry.Cli.Tests;

/// <summary>
/// The Linux runs spawn CPU-bound ferry processes: they run alone, so the timing-sensitive QEMU
/// migration tests of this assembly (a pre-copy that must not converge) never share the CPU with them.
/// </summary>
[CollectionDefinition(nameof(RunLinuxTests), DisableParallelization = true)]
public sealed class RunLinuxCollection;

/// <summary>`ferry run linux`, `ferry run --kernel ...` and `ferry resume` of a Linux VM, through the real ferry.dll.</summary>
[Collection(nameof(RunLinuxTests))]
public sealed class RunLinuxTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ferry.slnx")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }

    private static async Task<(int Exit, string Stdout, string Stderr)> FerryAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ferry.dll"));
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi)!;
        process.StandardInput.Close(); // end of file at once: nothing reaches the guest's UART
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"ferry {string.Join(' ', args)} did not finish within {Timeout}");
        }

        return (process.ExitCode, (await stdout).Replace("\r", "", StringComparison.Ordinal), await stderr);
    }

    private static string Digest(string stdout) => stdout.Split('\n').Single(l => l.StartsWith("digest: ", StringComparison.Ordinal));

    [Fact]
    public async Task RunLinux_BootsTheBuiltInGuestToReady_RunsTheWorkload_AndExitsWithItsPowerOff()
    {
        var (exit, stdout, stderr) = await FerryAsync("run", "linux", "--icount", "--config", "workload=kvstore,ops=1000000");
        Assert.True(exit == 0, $"exit {exit}: {stderr}\n{stdout}");
        Assert.Contains("Kernel command line: console=ttyS0 earlycon=sbi ferry.workload=kvstore ferry.ops=1000000\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\nferry-init: ready\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\nops 1000000 hits 949448 sum 0x9d5bff010d937378\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("reboot: Power down\n", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunKernel_BootsTheGivenFiles_WithTheGivenCommandLineAndFirmware()
    {
        string bin = Path.Combine(RepoRoot, "guests", "linux", "bin");
        var (exit, stdout, stderr) = await FerryAsync(
            "run", "--kernel", Path.Combine(bin, "Image.gz"), "--initrd", Path.Combine(bin, "initramfs.cpio.gz"),
            "--append", "console=ttyS0 ferry.workload=kvstore ferry.ops=1000000",
            "--bios", Path.Combine(RepoRoot, "guests", "firmware", "fw_jump.bin"), "--icount");
        Assert.True(exit == 0, $"exit {exit}: {stderr}\n{stdout}");
        Assert.Contains("Domain0 Next Arg1         : 0x0000000082200000\n", stdout, StringComparison.Ordinal); // fw_jump moved the tree
        Assert.Contains("Kernel command line: console=ttyS0 ferry.workload=kvstore ferry.ops=1000000\n", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("earlycon", stdout, StringComparison.Ordinal);
        Assert.Contains("\nferry-init: ready\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\nops 1000000 hits 949448 sum 0x9d5bff010d937378\n", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IcountLinuxRuns_AreRepeatable_AndSaveThenResumeEqualsAStraightRun()
    {
        const string Mid = "9000000", End = "25000000"; // in the kernel's init; past ready, in kvstore's populate
        string[] common = ["--config", "workload=kvstore"];
        var a = await FerryAsync(["run", "linux", "--icount", "--max-instructions", End, "--digest", .. common]);
        var b = await FerryAsync(["run", "linux", "--icount", "--max-instructions", End, "--digest", .. common]);
        Assert.True(a.Exit == 0, a.Stderr);
        Assert.Contains("\nferry-init: ready\n", a.Stdout, StringComparison.Ordinal);
        Assert.Equal(a.Stdout, b.Stdout);

        string snapshot = Path.Combine(Path.GetTempPath(), $"ferry-linux-{Guid.NewGuid():N}.snap");
        try
        {
            var first = await FerryAsync(["run", "linux", "--icount", "--max-instructions", Mid, "--save", snapshot, .. common]);
            Assert.True(first.Exit == 0, first.Stderr);
            Assert.Contains($"snapshot written to {snapshot} at {Mid} instructions", first.Stderr, StringComparison.Ordinal);
            var resumed = await FerryAsync("resume", snapshot, "--max-instructions", End, "--digest");
            Assert.True(resumed.Exit == 0, resumed.Stderr);
            Assert.Equal(Digest(a.Stdout), Digest(resumed.Stdout));
            Assert.Equal(a.Stdout, first.Stdout + resumed.Stdout);
        }
        finally
        {
            File.Delete(snapshot);
        }
    }

    [Theory]
    [InlineData("run hello --append quiet", "--initrd, --append and --bios go with --kernel or linux")]
    [InlineData("run linux --kernel nothing-here", "give either IMAGE or --kernel, not both")]
    [InlineData("run --kernel nothing-here", "--kernel nothing-here: no such file")]
    [InlineData("run linux --bios nothing-here", "--bios nothing-here: no such file")]
    [InlineData("run linux --config workload", "'workload' is not key=value")]
    [InlineData("run", "give an IMAGE (an ELF file, a built-in guest, or linux) or --kernel")]
    public async Task BadLinuxArguments_AreOneLineAndStatus125(string commandLine, string message)
    {
        var (exit, _, stderr) = await FerryAsync(commandLine.Split(' '));
        Assert.Equal(125, exit);
        Assert.Equal($"ferry: {message}", stderr.Trim().Split('\n').Single().Split(" (for Linux")[0]);
    }

    [Fact]
    public void LinuxCommandLine_IsTheDefaultOrAppend_ThenFerryKeys()
    {
        Assert.Equal(LinuxBoot.DefaultCommandLine + " ferry.workload=kvstore ferry.ops=10",
            GuestCatalog.ResolveLinux(null, null, null, null, "workload=kvstore, ops=10").CommandLine);
        Assert.Equal("console=ttyS0 quiet ferry.workload=idle",
            GuestCatalog.ResolveLinux(null, null, "console=ttyS0 quiet", "none", "workload=idle").CommandLine);
        LinuxBootFiles builtIn = GuestCatalog.ResolveLinux(null, null, null, null, null);
        Assert.Equal(LinuxBoot.DefaultCommandLine, builtIn.CommandLine);
        Assert.NotNull(builtIn.Firmware);
        Assert.NotNull(builtIn.Initrd);
        Assert.Null(GuestCatalog.ResolveLinux(null, null, null, "none", null).Firmware);
        Assert.NotEqual(builtIn.Firmware, GuestCatalog.ResolveLinux(null, null, null, "jump", null).Firmware);
    }
}
