using System.CommandLine;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.State;

namespace Ferry.Cli;

/// <summary>`ferry run` and `ferry resume`: one VM in this process, its console on stdout.</summary>
internal static class RunCommands
{
    public static Command Run()
    {
        var image = new Argument<string?>("IMAGE")
        {
            Description = "guest ELF file, a built-in guest name (hello, idle, dirty, verify, kvstore, compute), or linux (the built-in Linux kernel and initramfs)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var memory = new Option<string>("--memory") { Description = "guest RAM size (e.g. 256M, 1G)", DefaultValueFactory = _ => "256M" };
        var icount = new Option<bool>("--icount") { Description = "instruction-counted time: the run is a pure function of image and instruction count" };
        var noIdleSleep = new Option<bool>("--no-idle-sleep") { Description = "with --icount, skip WFI idle time at once instead of waiting it out" };
        var config = new Option<string?>("--config") { Description = "guest configuration block values, e.g. size_mib=16,passes=3; for Linux, ferry.KEY=VALUE on the command line (workload=kvstore)" };
        var kernel = new Option<string?>("--kernel") { Description = "boot this Linux kernel Image (raw or gzip) as QEMU virt does, instead of an ELF IMAGE" };
        var initrd = new Option<string?>("--initrd") { Description = "the initramfs for --kernel" };
        var append = new Option<string?>("--append") { Description = $"the kernel command line (default for linux: \"{LinuxBoot.DefaultCommandLine}\")" };
        var bios = new Option<string?>("--bios") { Description = "Linux firmware: default (built-in OpenSBI fw_dynamic), jump (built-in fw_jump), none, or a file loaded at 0x80000000" };
        var (maxInstructions, digest, save, engine) = CommonOptions();
        var (disk, net) = DeviceOptions.Create();

        var cmd = new Command("run", "Run a guest in this process; exits with the guest's status (0 when it stops at --max-instructions)")
        {
            image, memory, icount, noIdleSleep, config, kernel, initrd, append, bios, maxInstructions, digest, save, engine, disk, net,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Task.FromResult(Cli.Guard(() =>
        {
            string? name = p.GetValue(image);
            string? kernelPath = p.GetValue(kernel);
            bool linux = kernelPath is not null || name == GuestCatalog.Linux;
            if (kernelPath is not null && name is not null)
            {
                throw new GuestImageException("give either IMAGE or --kernel, not both");
            }

            if (!linux && (name is null || p.GetValue(initrd) is not null || p.GetValue(append) is not null || p.GetValue(bios) is not null))
            {
                throw new GuestImageException(name is null
                    ? "give an IMAGE (an ELF file, a built-in guest, or linux) or --kernel"
                    : "--initrd, --append and --bios go with --kernel or linux");
            }

            var machineConfig = new MachineConfig
            {
                MemorySize = MachineConfig.ParseSize(p.GetValue(memory)!),
                Icount = p.GetValue(icount),
                IdleSleep = !p.GetValue(noIdleSleep),
            };
            var console = new ConsoleLog { Echo = System.Console.OpenStandardOutput() };
            using var machine = new VirtMachine(machineConfig, console, DeviceOptions.Resolve(p.GetValue(disk), p.GetValue(net), name ?? GuestCatalog.Linux));
            machine.Hart.Engine = p.GetValue(engine);
            if (linux)
            {
                LinuxBoot.Load(machine, GuestCatalog.ResolveLinux(kernelPath, p.GetValue(initrd), p.GetValue(append), p.GetValue(bios), p.GetValue(config)));
            }
            else
            {
                machine.Load(GuestCatalog.Resolve(name!, p.GetValue(config)));
            }

            return Execute(machine, p.GetValue(maxInstructions), p.GetValue(digest), p.GetValue(save), ct);
        })));
        return cmd;
    }

    public static Command Resume()
    {
        var file = new Argument<string>("SNAPSHOT") { Description = "a snapshot written by --save" };
        var (maxInstructions, digest, save, engine) = CommonOptions();
        var (disk, net) = DeviceOptions.Create();
        var cmd = new Command("resume", "Restore a snapshot and continue running it (with the --disk and --net it was saved with)")
        {
            file, maxInstructions, digest, save, engine, disk, net,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Task.FromResult(Cli.Guard(() =>
        {
            var console = new ConsoleLog { Echo = System.Console.OpenStandardOutput() };
            using VirtMachine machine = Snapshot.Load(p.GetValue(file)!, console, DeviceOptions.Resolve(p.GetValue(disk), p.GetValue(net), "snapshot"));
            machine.Hart.Engine = p.GetValue(engine);
            machine.AnnounceAfterMove(); // the network learns where the VM is now
            return Execute(machine, p.GetValue(maxInstructions), p.GetValue(digest), p.GetValue(save), ct);
        })));
        return cmd;
    }

    private static (Option<ulong?> Max, Option<bool> Digest, Option<string?> Save, Option<ExecutionEngine> Engine) CommonOptions() =>
    (
        new Option<ulong?>("--max-instructions") { Description = "stop when this many instructions have retired in total (exit 0)" },
        new Option<bool>("--digest") { Description = "print 'digest: <hex>' (RAM, hart and devices) as the last line" },
        new Option<string?>("--save") { Description = "write a snapshot of the machine to this file when it stops (also on Ctrl-C)" },
        new Option<ExecutionEngine>("--engine")
        {
            Description = "what runs guest code: translator (hot code compiled to .NET code, the interpreter for the rest) or interpreter; the results are the same",
            DefaultValueFactory = _ => ExecutionEngine.Translator,
        }
    );

    private static int Execute(VirtMachine machine, ulong? maxInstructions, bool digest, string? save, CancellationToken ct)
    {
        using CancellationTokenRegistration reg = ct.Register(machine.RequestStop);
        RunOutcome outcome;
        using (RawTerminal? raw = RawTerminal.TryEnter())
        {
            if (raw is not null)
            {
                System.Console.Error.Write("[ferry: the console is this terminal; Ctrl-] stops the VM]\r\n");
            }

            ForwardStandardInput(machine, detachKey: raw is not null);
            outcome = machine.Run(maxInstructions ?? ulong.MaxValue);
            machine.Console.Flush();
        }

        if (save is not null)
        {
            Snapshot.Save(machine, save);
            System.Console.Error.WriteLine($"ferry: snapshot written to {save} at {machine.Hart.InstructionsRetired} instructions");
        }

        if (digest)
        {
            System.Console.Out.WriteLine($"digest: {StateDigest.Compute(machine)}");
        }

        if (machine.Hart.Engine == ExecutionEngine.Translator)
        {
            TranslationStatistics t = machine.Hart.TranslationStatistics;
            System.Console.Error.WriteLine(
                $"ferry: translator: {t.Blocks:N0} blocks ({t.Instructions:N0} instructions, {t.IlBytes:N0} B of IL; {t.Promoted:N0} promoted to optimized code) in {t.Time.TotalMilliseconds:F1} ms, {t.CachedBlocks:N0} cached");
        }

        return outcome switch
        {
            RunOutcome.GuestExited => machine.Exit!.Status,
            RunOutcome.InstructionLimit => 0,
            _ => 130,
        };
    }

    /// <summary>
    /// Standard input goes to the UART (the Linux guest's shell reads it) until end of file: a
    /// background thread, since the read blocks. Input the user types arrives at a moment the
    /// instruction count does not decide, so a run that takes input is not repeatable; an
    /// empty or closed stdin changes nothing. From a raw terminal (<paramref name="detachKey"/>),
    /// Ctrl-] stops the VM (Ctrl-C goes to the guest, as in QEMU's console).
    /// </summary>
    private static void ForwardStandardInput(VirtMachine machine, bool detachKey)
    {
        var thread = new Thread(() =>
        {
            try
            {
                using Stream input = detachKey ? RawTerminal.OpenInput() : System.Console.OpenStandardInput();
                byte[] buffer = new byte[256];
                int n;
                while ((n = input.Read(buffer)) > 0)
                {
                    int stop = detachKey ? Array.IndexOf(buffer, RawTerminal.DetachKey, 0, n) : -1;
                    machine.Uart.EnqueueInput(buffer.AsSpan(0, stop < 0 ? n : stop));
                    if (stop >= 0)
                    {
                        machine.RequestStop();
                        return;
                    }
                }
            }
            catch (IOException)
            {
                // stdin went away: nothing more to forward
            }
        })
        {
            IsBackground = true,
            Name = "ferry stdin",
        };
        thread.Start();
    }
}
