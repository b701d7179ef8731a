using System.CommandLine;
using System.Text;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Spectre.Console;

namespace Ferry.Cli;

/// <summary>
/// `ferry demo`: two host agents on this machine, a Linux VM running kvstore (or the bare-metal
/// kvstore guest) serving on the first, a hybrid live migration to the second over an emulated
/// 1 Gbit/s link while it keeps serving, then the summary and the console picking up where it
/// left off.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        Option<StrategyKind> strategy = Common.StrategyOption(StrategyKind.Hybrid);
        var bandwidth = new Option<string>("--bandwidth") { Description = "emulated link rate", DefaultValueFactory = _ => "1Gbit" };
        var memory = new Option<string>("--memory") { Description = "guest RAM", DefaultValueFactory = _ => "256M" };
        var guest = new Option<string>("--guest")
        {
            Description = "linux: Linux 6.1 on OpenSBI running kvstore as a process; kvstore: the bare-metal kvstore guest",
            DefaultValueFactory = _ => GuestCatalog.Linux,
        };
        guest.AcceptOnlyFromAmong(GuestCatalog.Linux, "kvstore");
        var cmd = new Command("demo", "Migrate a serving VM (Linux running kvstore) between two local host agents (hybrid, 1 Gbit/s) and show what it cost")
        {
            strategy, bandwidth, memory, guest,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(() => RunAsync(p.GetValue(guest)!, StrategyPolicy.NameOf(p.GetValue(strategy)), p.GetValue(bandwidth)!, p.GetValue(memory)!, ct)));
        return cmd;
    }

    private static async Task<int> RunAsync(string guest, string strategy, string bandwidth, string memory, CancellationToken ct)
    {
        AnsiConsole.MarkupLine("[bold]Ferry demo[/]: live migration of a RISC-V VM between two host agents on this machine");
        AnsiConsole.MarkupLine("[grey]starting host agents A and B ...[/]");
        Task<LocalHost> startA = LocalHost.StartAsync("A", ct);
        Task<LocalHost> startB = LocalHost.StartAsync("B", ct);
        await using LocalHost a = await startA;
        await using LocalHost b = await startB;
        AnsiConsole.MarkupLine($"  A: api {a.Api}, migrations on {a.Data}");
        AnsiConsole.MarkupLine($"  B: api {b.Api}, migrations on {b.Data}");

        using var hostA = new HostClient(a.Api, null);
        using var hostB = new HostClient(b.Api, null);
        ulong memoryBytes = Ferry.Machine.Board.MachineConfig.ParseSize(memory);
        string name = guest;
        long shown = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (guest == GuestCatalog.Linux)
        {
            // kvstore's table: half the RAM, so that most of memory is the application's.
            ulong tableMib = Math.Max(1, memoryBytes >> 21);
            Ferry.Machine.Board.LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, null, null, $"workload=kvstore,table_mib={tableMib},report_every=200000");
            await hostA.StartVmAsync(new StartVmRequest { Name = name, Linux = GuestCatalog.Request(files), MemoryBytes = memoryBytes }, ct);
            AnsiConsole.MarkupLine($"[grey]booting Linux 6.1 on OpenSBI on A ({Markup.Escape(memory)}), command line \"{Markup.Escape(files.CommandLine)}\"[/]");
            await hostA.WaitForConsoleLineAsync(name, $"'{Bench.QemuLinuxGuest.ReadyLine}'", line => line == Bench.QemuLinuxGuest.ReadyLine, Bench.QemuLinuxGuest.BootTimeout, ct);
            shown = await ShowConsoleAsync(hostA, name, "A", shown, 3, ct);
            AnsiConsole.MarkupLine($"[grey]Linux is up after {clock.Elapsed.TotalSeconds:F2} s; /init runs kvstore as a process: it fills a {tableMib} MiB hash table in an anonymous mapping, then serves gets and puts, 95% of them on a 2% hot set[/]");
        }
        else
        {
            var image = GuestCatalog.Resolve("kvstore");
            await hostA.StartVmAsync(new StartVmRequest { Name = name, Image = Convert.ToBase64String(image.Bytes), MemoryBytes = memoryBytes }, ct);
            AnsiConsole.MarkupLine($"[grey]booted the kvstore guest on A ({Markup.Escape(memory)}): it fills a 192 MiB hash table, then serves gets and puts, 95% of them on a 4 MiB hot set[/]");
        }

        // Let it populate its table and serve for a while, showing its console.
        await hostA.WaitForConsoleLineAsync(name, "kvstore progress line", line => line.StartsWith("ops ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        do
        {
            await Task.Delay(500, ct);
            shown = await ShowConsoleAsync(hostA, name, "A", shown, 2, ct);
        }
        while (DateTime.UtcNow < deadline);

        AnsiConsole.MarkupLine($"[bold]migrating {name} A -> B[/] with [bold]{Markup.Escape(strategy)}[/] over an emulated {Markup.Escape(bandwidth)}/s link, while it serves");
        var request = new MigrateRequest { Destination = "", Token = "", Strategy = strategy, Bandwidth = bandwidth };
        MigrationReport report = await MigrateCommand.WithProgressAsync(hostA, hostB, name, request, ct);
        MigrateCommand.PrintSummary(report);
        if (report.Outcome != MigrationOutcome.Completed)
        {
            return 1;
        }

        // The console continues on B exactly where A's ended.
        VmStatus atB = await hostB.StatusAsync(name, ct);
        await Task.Delay(1500, ct);
        AnsiConsole.MarkupLine($"[bold]console[/]: A's part ends at byte {atB.ConsoleStart}; B continues from there:");
        using var tail = new MemoryStream();
        await hostA.ConsoleAsync(name, Math.Max(0, atB.ConsoleStart - 120), false, tail, ct);
        PrintLines("A", Encoding.ASCII.GetString(tail.ToArray()), 2);
        using var head = new MemoryStream();
        await hostB.ConsoleAsync(name, atB.ConsoleStart, false, head, ct);
        PrintLines("B", Encoding.ASCII.GetString(head.ToArray()), 4, fromStart: true);
        AnsiConsole.MarkupLine($"[grey]status on B: {VmInstance.Describe(atB.State)}, {atB.InstructionsRetired:N0} instructions at the time of the check; the full report: ferry migrate ... --json FILE[/]");
        return 0;
    }

    private static async Task<long> ShowConsoleAsync(HostClient host, string name, string label, long from, int lines, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        (long start, _) = await host.ConsoleAsync(name, from, false, buffer, ct);
        string text = Encoding.ASCII.GetString(buffer.ToArray());
        int complete = text.LastIndexOf('\n') + 1;
        foreach (string line in text[..complete].Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(lines))
        {
            AnsiConsole.MarkupLine($"  [grey]{label}>[/] {Markup.Escape(line.TrimEnd('\r'))}");
        }

        return start + Encoding.ASCII.GetByteCount(text[..complete]);
    }

    private static void PrintLines(string label, string text, int count, bool fromStart = false)
    {
        string[] lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        IEnumerable<string> chosen = fromStart ? lines.Take(count) : lines.TakeLast(count);
        foreach (string line in chosen)
        {
            AnsiConsole.MarkupLine($"  [grey]{label}>[/] {Markup.Escape(line.TrimEnd('\r'))}");
        }
    }
}
