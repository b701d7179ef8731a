using Ferry.Machine.Board;
using Xunit;

namespace Ferry.Machine.Tests.Memory;

/// <summary>Untouched guest memory costs the host nothing: a 4 GiB VM that runs a small guest stays small.</summary>
public class LazyMemoryTests
{
    [Fact]
    public void A_large_vm_running_a_small_guest_uses_host_memory_only_for_what_it_touched()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        long before = ResidentBytes();
        using var machine = new VirtMachine(new MachineConfig { MemorySize = 4UL << 30, Icount = true });
        machine.Load(GuestImage.Load(Path.Combine(Support.Repo.Root, "guests", "bin", "hello.elf")));
        Assert.Equal(RunOutcome.GuestExited, machine.Run(10_000_000));
        long growth = ResidentBytes() - before;

        Assert.True(growth < 64L << 20, $"a 4 GiB VM running hello grew the process by {growth >> 20} MiB");
        Assert.InRange(machine.Memory.Populated.PopCount(), 1, 64);
    }

    private static long ResidentBytes()
    {
        // /proc/self/statm: size resident shared ... (pages)
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1]) * Environment.SystemPageSize;
    }
}
