using System.CommandLine;
using Ferry.Cli;

var root = new RootCommand("Ferry: live migration of RISC-V virtual machines (pre-copy, post-copy, hybrid)")
{
    RunCommands.Run(),
    RunCommands.Resume(),
    HostCommand.Create(),
    VmCommands.Create(),
    MigrateCommand.Create(),
    DemoCommand.Create(),
};
// Ctrl-C and SIGTERM cancel the running command, which then winds down cleanly (a migration is
// cancelled, not abandoned; a host stops its VMs); after 30 s the process is ended regardless.
var config = new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) };
return await root.Parse(args).InvokeAsync(config);
