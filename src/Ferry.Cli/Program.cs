using System.CommandLine;
using Ferry.Cli;

var root = new RootCommand("Ferry: live migration of RISC-V virtual machines (pre-copy, post-copy, hybrid)")
{
    RunCommands.Run(),
    RunCommands.Resume(),
    HostCommand.Create(),
    VmCommands.Create(),
    MigrateCommand.Create(),
};
var config = new InvocationConfiguration { ProcessTerminationTimeout = null };
return await root.Parse(args).InvokeAsync(config);
