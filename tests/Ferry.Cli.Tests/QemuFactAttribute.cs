using Ferry.Cli.Bench;

namespace Ferry.Cli.Tests;

/// <summary>A fact that needs qemu-system-riscv64: skipped when it is not on PATH.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public QemuFactAttribute()
    {
        if (!QemuMigration.Available)
        {
            Skip = "qemu-system-riscv64 is not on PATH";
        }
    }
}
