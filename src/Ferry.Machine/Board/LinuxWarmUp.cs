using System.Text;
using Ferry.Machine.Cpu;
using Ferry.Machine.Cpu.Translation;

namespace Ferry.Machine.Board;

/// <summary>
/// Boots Linux once in a scratch machine, so that the .NET JIT has compiled what a Linux VM runs
/// (supervisor mode, Sv39 walks, traps and interrupts, the devices, the translator's tiers) before
/// a real VM depends on it. Without it a host process's first Linux VM, typically one that just
/// arrived by migration, runs its first 2 M instructions in about 20 ms instead of 2 to 5: the
/// JIT's first compiles of those paths, right after the resume (docs/performance.md). The boot is
/// instruction-counted with idle time skipped, so it costs CPU only (about 25 M instructions), and
/// the scratch machine has no disk and no network. Given the host's <see cref="TranslationCache"/>,
/// it also leaves there the translations of the boot's hot code, which the host's VMs then
/// install without compiling.
/// </summary>
public static class LinuxWarmUp
{
    /// <summary>The line the built-in initramfs prints when it is up.</summary>
    public const string Ready = "ferry-init: ready";

    /// <summary>Instructions the boot may take before it is given up (a boot to ready takes about 23 M).</summary>
    public const ulong MaxInstructions = 80_000_000;

    /// <summary>Instructions run after ready (the guest's idle loop and timer interrupts).</summary>
    public const ulong AfterReady = 2_000_000;

    private const ulong Step = 1_000_000;

    /// <summary>The warm-up's translation threshold when it fills a shared cache (a VM's own is <see cref="Hart.DefaultTranslationThreshold"/>).</summary>
    public const int TranslationThreshold = 256;

    /// <summary>The warm-up's promotion threshold when it fills a shared cache: the regions that retire this many instructions in the boot are left optimized.</summary>
    public const long PromotionThreshold = 20_000;

    /// <summary>
    /// Boots <paramref name="files"/> to <see cref="Ready"/> (and a little further); returns the
    /// instructions retired and whether ready was seen. With <paramref name="translations"/>, what
    /// the boot translates is kept there for the VMs that share it.
    /// </summary>
    public static (ulong Instructions, bool Ready) Boot(LinuxBootFiles files, TranslationCache? translations = null, CancellationToken cancellation = default)
    {
        using var machine = new VirtMachine(new MachineConfig { MemorySize = 128UL << 20, Icount = true, IdleSleep = false });
        machine.Hart.SharedTranslations = translations;
        if (translations is not null)
        {
            // Leave more than the boot's hottest code behind, at once: the VMs that share the
            // cache take whatever fits their instructions, long before their own passes would
            // have made it worth translating.
            machine.Hart.TranslationThreshold = TranslationThreshold;
            machine.Hart.PromotionThreshold = PromotionThreshold;
            machine.Hart.TranslateInBackground = false;
        }

        LinuxBoot.Load(machine, files);
        var console = new StringBuilder();
        long read = 0;
        ulong readyAt = 0;
        while (!cancellation.IsCancellationRequested && machine.Exit is null)
        {
            ulong retired = machine.Hart.InstructionsRetired;
            if (retired >= MaxInstructions || (readyAt != 0 && retired >= readyAt + AfterReady))
            {
                break;
            }

            machine.Run(retired + Step);
            if (readyAt == 0)
            {
                (long offset, byte[] bytes) = machine.Console.Read(read);
                read = offset + bytes.Length;
                console.Append(Encoding.ASCII.GetString(bytes));
                if (console.ToString().Contains(Ready, StringComparison.Ordinal))
                {
                    readyAt = machine.Hart.InstructionsRetired;
                }
            }
        }

        return (machine.Hart.InstructionsRetired, readyAt != 0);
    }
}
