using System.CommandLine;
using Ferry.Cli;

// Tables and progress written to a file or pipe get a wide virtual console instead of 80 columns.
if (Console.IsOutputRedirected)
{
    Spectre.Console.AnsiConsole.Profile.Width = 200;
}

var root = new RootCommand("Ferry: live migration of RISC-V virtual machines (pre-copy, post-copy, hybrid)")
{
    RunCommands.Run(),
    RunCommands.Resume(),
    HostCommand.Create(),
    VmCommands.Create(),
    MigrateCommand.Create(),
    DemoCommand.Create(),
    Ferry.Cli.Bench.BenchCommand.Create(),
};
// Ctrl-C and SIGTERM cancel the running command, which then winds down cleanly (a migration is
// cancelled, not abandoned; a host stops its VMs); after 30 s the process is ended regardless.
var config = new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) };
return await root.Parse(args).InvokeAsync(config);
