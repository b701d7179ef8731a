using Ferry.Machine.Devices;
using Ferry.Machine.Devices.Virtio;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Board;

/// <summary>What the device tree says beyond the board itself: the hart's ISA and what the kernel is given.</summary>
public sealed record DeviceTreeOptions
{
    public required ulong MemorySize { get; init; }

    /// <summary>/cpus/cpu@0 riscv,isa: the ISA the hart implements (e.g. "rv64imac_zicsr_zifencei").</summary>
    public required string Isa { get; init; }

    /// <summary>/chosen bootargs (the kernel command line).</summary>
    public string BootArgs { get; init; } = "";

    /// <summary>The initramfs in guest physical memory [Start, End), or null for none.</summary>
    public (ulong Start, ulong End)? Initrd { get; init; }

    /// <summary>/chosen rng-seed: fixed bytes from the caller (QEMU gives random ones each boot; a run must be repeatable), or null for none.</summary>
    public byte[]? RngSeed { get; init; }

    /// <summary>The virtio-mmio slots that hold a device (QEMU lists all eight; Ferry only those with a device, so a VM without devices keeps the tree it had).</summary>
    public IReadOnlyList<int> VirtioSlots { get; init; } = [];
}

/// <summary>
/// The device tree of Ferry's virt board, as QEMU 7.2 builds it for virt (hw/riscv/virt.c;
/// guests/linux/qemu-virt.dts) minus the devices Ferry lacks (PCI, RTC, flash, fw-cfg, platform
/// bus, PMU) and the virtio-mmio slots without a device (those with one are listed as QEMU does,
/// highest address first, so Linux probes them in QEMU's order). Phandles as QEMU's: cpu@0 1, its interrupt controller 2,
/// the PLIC 3, the test device 4.
/// </summary>
public static class VirtDeviceTree
{
    public const uint TimebaseFrequency = (uint)MachineClock.TimebaseHz;
    public const string StdoutPath = "/soc/serial@10000000";

    private const uint CpuPhandle = 1, IntcPhandle = 2, PlicPhandle = 3, TestPhandle = 4;

    public static byte[] Build(DeviceTreeOptions o) => FlattenedDeviceTree.Write(BuildTree(o));

    public static DeviceTreeNode BuildTree(DeviceTreeOptions o)
    {
        if (o.Initrd is { } initrd && initrd.End < initrd.Start)
        {
            throw new ArgumentException($"initrd end 0x{initrd.End:x} is below its start 0x{initrd.Start:x}", nameof(o));
        }

        var root = new DeviceTreeNode("")
            .Cells("#address-cells", 2)
            .Cells("#size-cells", 2)
            .Strings("compatible", "riscv-virtio")
            .Strings("model", "riscv-virtio,qemu");

        DeviceTreeNode chosen = root.AddChild("chosen");
        if (o.Initrd is { } rd)
        {
            chosen.Cells64("linux,initrd-end", rd.End).Cells64("linux,initrd-start", rd.Start);
        }

        if (o.RngSeed is { } seed)
        {
            chosen.Bytes("rng-seed", seed);
        }

        chosen.Strings("bootargs", o.BootArgs).Strings("stdout-path", StdoutPath);

        root.AddChild("poweroff")
            .Cells("value", 0x5555).Cells("offset", 0).Cells("regmap", TestPhandle).Strings("compatible", "syscon-poweroff");
        root.AddChild("reboot")
            .Cells("value", 0x7777).Cells("offset", 0).Cells("regmap", TestPhandle).Strings("compatible", "syscon-reboot");

        root.AddChild($"memory@{GuestMemory.DefaultBase:x}")
            .Strings("device_type", "memory")
            .Cells64("reg", GuestMemory.DefaultBase, o.MemorySize);

        DeviceTreeNode cpus = root.AddChild("cpus")
            .Cells("#address-cells", 1)
            .Cells("#size-cells", 0)
            .Cells("timebase-frequency", TimebaseFrequency);
        DeviceTreeNode cpu = cpus.AddChild("cpu@0")
            .Cells("phandle", CpuPhandle)
            .Strings("device_type", "cpu")
            .Cells("reg", 0)
            .Strings("status", "okay")
            .Strings("compatible", "riscv")
            .Strings("riscv,isa", o.Isa)
            .Strings("mmu-type", "riscv,sv39");
        cpu.AddChild("interrupt-controller")
            .Cells("#interrupt-cells", 1)
            .Empty("interrupt-controller")
            .Strings("compatible", "riscv,cpu-intc")
            .Cells("phandle", IntcPhandle);
        cpus.AddChild("cpu-map").AddChild("cluster0").AddChild("core0").Cells("cpu", CpuPhandle);

        DeviceTreeNode soc = root.AddChild("soc")
            .Cells("#address-cells", 2)
            .Cells("#size-cells", 2)
            .Strings("compatible", "simple-bus")
            .Empty("ranges");
        soc.AddChild($"serial@{Uart16550.DefaultBase:x}")
            .Cells("interrupts", VirtMachine.UartIrq)
            .Cells("interrupt-parent", PlicPhandle)
            .Cells("clock-frequency", Uart16550.ClockFrequency)
            .Cells64("reg", Uart16550.DefaultBase, 0x100)
            .Strings("compatible", "ns16550a");
        soc.AddChild($"test@{SifiveTest.DefaultBase:x}")
            .Cells("phandle", TestPhandle)
            .Cells64("reg", SifiveTest.DefaultBase, 0x1000)
            .Strings("compatible", "sifive,test1", "sifive,test0", "syscon");
        foreach (int slot in o.VirtioSlots.OrderDescending())
        {
            ulong address = VirtioMmio.FirstBase + ((ulong)slot * VirtioMmio.Stride);
            soc.AddChild($"virtio_mmio@{address:x}")
                .Cells("interrupts", (uint)(VirtioMmio.FirstIrq + slot))
                .Cells("interrupt-parent", PlicPhandle)
                .Cells64("reg", address, VirtioMmio.Stride)
                .Strings("compatible", "virtio,mmio");
        }

        soc.AddChild($"plic@{Plic.DefaultBase:x}")
            .Cells("phandle", PlicPhandle)
            .Cells("riscv,ndev", Plic.SourceCount - 1)
            .Cells64("reg", Plic.DefaultBase, 0x60_0000)
            .Cells("interrupts-extended", IntcPhandle, 11, IntcPhandle, 9) // M, S external
            .Empty("interrupt-controller")
            .Strings("compatible", "sifive,plic-1.0.0", "riscv,plic0")
            .Cells("#address-cells", 0)
            .Cells("#interrupt-cells", 1);
        soc.AddChild($"clint@{Clint.DefaultBase:x}")
            .Cells("interrupts-extended", IntcPhandle, 3, IntcPhandle, 7) // M software, M timer
            .Cells64("reg", Clint.DefaultBase, 0x10000)
            .Strings("compatible", "sifive,clint0", "riscv,clint0");
        return root;
    }
}
