using System.CommandLine;
using System.CommandLine.Parsing;
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
    Ferry.Cli.Client.ClientCommand.Create(),
};
// Ctrl-C and SIGTERM cancel the running command, which then winds down cleanly (a migration is
// cancelled, not abandoned; a host stops its VMs); after 30 s the process is ended regardless.
var config = new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) };
ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0 && parsed.CommandResult.Command != root)
{
    // A bad option value is one line in the user's terms (never a .NET type name), before anything runs.
    var path = new List<string>();
    for (CommandResult? c = parsed.CommandResult; c is not null && c.Command != root; c = c.Parent as CommandResult)
    {
        path.Insert(0, c.Command.Name);
    }

    Cli.Fail(CommandLineErrors.Describe(parsed.Errors[0].Message) + $" (ferry {string.Join(' ', path)} --help lists the options)");
    return Cli.ErrorExit;
}

return await parsed.InvokeAsync(config);
