using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Board;

public sealed class DeviceTreeTests
{
    private const string Isa = "rv64imac_zicsr_zifencei";
    private static readonly byte[] Seed = [.. Enumerable.Range(1, 32).Select(i => (byte)i)];

    private static DeviceTreeOptions Options => new()
    {
        MemorySize = 256UL << 20,
        Isa = Isa,
        BootArgs = "console=ttyS0 ferry.workload=kvstore",
        Initrd = (0x8820_0000, 0x8820_11E4),
        RngSeed = Seed,
    };

    private static byte[] Dtb(DeviceTreeOptions? o = null) => VirtDeviceTree.Build(o ?? Options);

    /// <summary>
    /// The one warning dtc 1.6 gives for QEMU's own virt tree as well (checked below): the cpu's
    /// interrupt controller has no #address-cells, which nothing reads (Linux, OpenSBI).
    /// </summary>
    private const string AcceptedWarning = "Warning (interrupt_provider): /cpus/cpu@0/interrupt-controller: Missing #address-cells in interrupt provider";

    private static string Dts(byte[] dtb) => Decompile(dtb).Dts;

    private static (string Dts, string[] Warnings) Decompile(byte[] dtb)
    {
        (int code, byte[] output, string errors) = Dtc.Run(dtb, "-I", "dtb", "-O", "dts");
        Assert.True(code == 0, "dtc refused the tree: " + errors);
        string[] warnings = errors.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(warnings, w => Assert.EndsWith(AcceptedWarning, w, StringComparison.Ordinal));
        return (Encoding.UTF8.GetString(output), warnings);
    }

    [Fact]
    public void Header_IsFdtVersion17_WithAnEmptyReservationBlock()
    {
        var fdt = new FdtReader(Dtb());
        Assert.Equal(17u, fdt.Version);
        Assert.Equal(16u, fdt.LastCompatibleVersion);
        Assert.Empty(fdt.Reservations);

        byte[] reserved = FlattenedDeviceTree.Write(new DeviceTreeNode(""), [(0x8000_0000, 0x8_0000)]);
        Assert.Equal([(0x8000_0000UL, 0x8_0000UL)], new FdtReader(reserved).Reservations);
    }

    [Fact]
    public void Properties_AreThoseLinuxAndOpenSbiRead()
    {
        var t = new FdtReader(Dtb());
        Assert.Equal([2u], t.Cells("/", "#address-cells"));
        Assert.Equal([2u], t.Cells("/", "#size-cells"));
        Assert.Equal(["riscv-virtio"], t.Strings("/", "compatible"));
        Assert.Equal(["riscv-virtio,qemu"], t.Strings("/", "model"));

        Assert.Equal(["console=ttyS0 ferry.workload=kvstore"], t.Strings("/chosen", "bootargs"));
        Assert.Equal(["/soc/serial@10000000"], t.Strings("/chosen", "stdout-path"));
        Assert.Equal([0u, 0x8820_0000u], t.Cells("/chosen", "linux,initrd-start"));
        Assert.Equal([0u, 0x8820_11E4u], t.Cells("/chosen", "linux,initrd-end"));
        Assert.Equal(Seed, t.Prop("/chosen", "rng-seed"));

        Assert.Equal(["memory"], t.Strings("/memory@80000000", "device_type"));
        Assert.Equal([0u, 0x8000_0000u, 0u, 0x1000_0000u], t.Cells("/memory@80000000", "reg"));

        Assert.Equal([10_000_000u], t.Cells("/cpus", "timebase-frequency"));
        Assert.Equal([1u], t.Cells("/cpus", "#address-cells"));
        Assert.Equal([0u], t.Cells("/cpus", "#size-cells"));
        const string Cpu = "/cpus/cpu@0";
        Assert.Equal(["cpu"], t.Strings(Cpu, "device_type"));
        Assert.Equal([0u], t.Cells(Cpu, "reg"));
        Assert.Equal(["okay"], t.Strings(Cpu, "status"));
        Assert.Equal(["riscv"], t.Strings(Cpu, "compatible"));
        Assert.Equal([Isa], t.Strings(Cpu, "riscv,isa"));
        Assert.Equal(["riscv,sv39"], t.Strings(Cpu, "mmu-type"));
        const string Intc = Cpu + "/interrupt-controller";
        Assert.Equal([1u], t.Cells(Intc, "#interrupt-cells"));
        Assert.Empty(t.Prop(Intc, "interrupt-controller"));
        Assert.Equal(["riscv,cpu-intc"], t.Strings(Intc, "compatible"));
        uint intc = t.Cells(Intc, "phandle")[0];
        Assert.Equal(t.Cells(Cpu, "phandle"), t.Cells("/cpus/cpu-map/cluster0/core0", "cpu"));

        Assert.Equal(["simple-bus"], t.Strings("/soc", "compatible"));
        Assert.Empty(t.Prop("/soc", "ranges"));

        const string Clint = "/soc/clint@2000000";
        Assert.Equal(["sifive,clint0", "riscv,clint0"], t.Strings(Clint, "compatible"));
        Assert.Equal([intc, 3u, intc, 7u], t.Cells(Clint, "interrupts-extended"));
        Assert.Equal([0u, 0x0200_0000u, 0u, 0x1_0000u], t.Cells(Clint, "reg"));

        const string Plic = "/soc/plic@c000000";
        Assert.Equal(["sifive,plic-1.0.0", "riscv,plic0"], t.Strings(Plic, "compatible"));
        Assert.Equal([1u], t.Cells(Plic, "#interrupt-cells"));
        Assert.Empty(t.Prop(Plic, "interrupt-controller"));
        Assert.Equal([95u], t.Cells(Plic, "riscv,ndev"));
        Assert.Equal([intc, 11u, intc, 9u], t.Cells(Plic, "interrupts-extended"));
        Assert.Equal([0u, 0x0C00_0000u, 0u, 0x60_0000u], t.Cells(Plic, "reg"));
        uint plic = t.Cells(Plic, "phandle")[0];

        const string Serial = "/soc/serial@10000000";
        Assert.Equal(["ns16550a"], t.Strings(Serial, "compatible"));
        Assert.Equal([3_686_400u], t.Cells(Serial, "clock-frequency"));
        Assert.Equal([10u], t.Cells(Serial, "interrupts"));
        Assert.Equal([plic], t.Cells(Serial, "interrupt-parent"));
        Assert.Equal([0u, 0x1000_0000u, 0u, 0x100u], t.Cells(Serial, "reg"));

        const string Test = "/soc/test@100000";
        Assert.Equal(["sifive,test1", "sifive,test0", "syscon"], t.Strings(Test, "compatible"));
        Assert.Equal([0u, 0x10_0000u, 0u, 0x1000u], t.Cells(Test, "reg"));
        uint test = t.Cells(Test, "phandle")[0];
        Assert.Equal(["syscon-poweroff"], t.Strings("/poweroff", "compatible"));
        Assert.Equal([test], t.Cells("/poweroff", "regmap"));
        Assert.Equal([0u], t.Cells("/poweroff", "offset"));
        Assert.Equal([0x5555u], t.Cells("/poweroff", "value"));
        Assert.Equal(["syscon-reboot"], t.Strings("/reboot", "compatible"));
        Assert.Equal([test], t.Cells("/reboot", "regmap"));
        Assert.Equal([0x7777u], t.Cells("/reboot", "value"));

        // Phandles are unique.
        var phandles = t.Nodes.Values.Where(n => n.ContainsKey("phandle")).Select(n => n["phandle"]).Select(Convert.ToHexString).ToList();
        Assert.Equal(phandles.Count, phandles.Distinct().Count());
    }

    [Fact]
    public void OptionalChosenProperties_AreLeftOutWhenNotGiven()
    {
        var t = new FdtReader(Dtb(new DeviceTreeOptions { MemorySize = 64UL << 20, Isa = Isa }));
        Assert.False(t.Nodes["/chosen"].ContainsKey("linux,initrd-start"));
        Assert.False(t.Nodes["/chosen"].ContainsKey("linux,initrd-end"));
        Assert.False(t.Nodes["/chosen"].ContainsKey("rng-seed"));
        Assert.Equal([""], t.Strings("/chosen", "bootargs"));
        Assert.Equal([0u, 0x8000_0000u, 0u, 0x400_0000u], t.Cells("/memory@80000000", "reg"));
    }

    [Fact]
    public void Build_IsDeterministic() => Assert.Equal(Dtb(), Dtb());

    [Fact]
    public void BadInput_IsRefused()
    {
        Assert.Throws<ArgumentException>(() => Dtb(Options with { Initrd = (0x9000_0000, 0x8000_0000) }));
        Assert.Throws<ArgumentException>(() => new DeviceTreeNode("a").Cells("x", 1).Cells("x", 2));
        Assert.Throws<ArgumentException>(() => new DeviceTreeNode("a/b"));
        Assert.Throws<ArgumentException>(() => new DeviceTreeNode("a").Strings("s", "nul\0inside"));
    }

    [DtcFact]
    public void Dtc_DecompilesTheTree_WithoutWarnings()
    {
        string dts = Dts(Dtb());
        Assert.Contains("timebase-frequency = <0x989680>;", dts, StringComparison.Ordinal);
        Assert.Contains("riscv,isa = \"rv64imac_zicsr_zifencei\";", dts, StringComparison.Ordinal);
        Assert.Contains("compatible = \"sifive,plic-1.0.0\\0riscv,plic0\";", dts, StringComparison.Ordinal);
        Assert.Contains("riscv,ndev = <0x5f>;", dts, StringComparison.Ordinal);
        Assert.Contains("stdout-path = \"/soc/serial@10000000\";", dts, StringComparison.Ordinal);
        Assert.Contains("interrupts-extended = <0x02 0x0b 0x02 0x09>;", dts, StringComparison.Ordinal);
        Assert.Contains("serial@10000000 {", dts, StringComparison.Ordinal);
    }

    [DtcFact]
    public void Dtc_RoundTrip_GivesTheSameTree()
    {
        byte[] ours = Dtb();
        string dts = Dts(ours);
        (int code, byte[] recompiled, string errors) = Dtc.Run(Encoding.UTF8.GetBytes(dts), "-I", "dts", "-O", "dtb");
        Assert.True(code == 0, "dtc could not compile its own output: " + errors);
        Assert.Equal(dts, Dts(recompiled));

        var a = new FdtReader(ours);
        var b = new FdtReader(recompiled);
        Assert.Equal(a.Nodes.Keys.Order(), b.Nodes.Keys.Order());
        foreach ((string path, Dictionary<string, byte[]> props) in a.Nodes)
        {
            Assert.Equal(props.Keys.Order(), b.Nodes[path].Keys.Order());
            foreach ((string name, byte[] value) in props)
            {
                Assert.True(value.AsSpan().SequenceEqual(b.Nodes[path][name]), $"{path} {name} differs after the round trip");
            }
        }
    }

    /// <summary>
    /// Every node Ferry has, property by property, against QEMU 7.2's own virt tree
    /// (guests/linux/qemu-virt.dts), apart from what differs by design.
    /// </summary>
    [DtcFact]
    public void Tree_MatchesQemuVirt_ForTheDevicesFerryHas()
    {
        string reference = File.ReadAllText(Path.Combine(Repo.Root, "guests", "linux", "qemu-virt.dts"));
        (int code, byte[] qemuDtb, string errors) = Dtc.Run(Encoding.UTF8.GetBytes(reference), "-I", "dts", "-O", "dtb");
        Assert.True(code == 0, errors);
        Assert.Single(Decompile(qemuDtb).Warnings); // QEMU's tree draws the same warning as ours
        var qemu = new FdtReader(qemuDtb);
        var ferry = new FdtReader(Dtb(Options with { Initrd = (0x8820_0000, 0x8820_11E4), VirtioSlots = [0, 1, 2, 3, 4, 5, 6, 7] }));
        Assert.Equal(8, ferry.Nodes.Keys.Count(k => k.StartsWith("/soc/virtio_mmio@", StringComparison.Ordinal)));

        // Ours differ by design: the ISA and paging mode (the hart's own), riscv,ndev (QEMU 7.2 says 96
        // for sources 1..95; later QEMU says 95), and the per-boot /chosen values (initrd cells, seed).
        var differ = new HashSet<string>
        {
            "/cpus/cpu@0 riscv,isa", "/cpus/cpu@0 mmu-type", "/soc/plic@c000000 riscv,ndev",
            "/chosen linux,initrd-start", "/chosen linux,initrd-end", "/chosen rng-seed",
        };
        foreach ((string path, Dictionary<string, byte[]> props) in ferry.Nodes)
        {
            Assert.True(qemu.Nodes.ContainsKey(path), $"QEMU's tree has no {path}");
            Assert.Equal(qemu.Nodes[path].Keys.Order(), props.Keys.Order());
            foreach ((string name, byte[] value) in props)
            {
                if (!differ.Contains($"{path} {name}"))
                {
                    Assert.True(value.AsSpan().SequenceEqual(qemu.Nodes[path][name]), $"{path} {name}: Ferry {Convert.ToHexString(value)}, QEMU {Convert.ToHexString(qemu.Nodes[path][name])}");
                }
            }
        }

        Assert.Equal([0x60u], qemu.Cells("/soc/plic@c000000", "riscv,ndev"));
        Assert.Equal([0x8820_0000u], qemu.Cells("/chosen", "linux,initrd-start"));
    }

    [DtcFact]
    public void Virtio_slots_with_a_device_are_listed_highest_first_as_qemu_does_and_empty_ones_not_at_all()
    {
        string dts = Dts(Dtb(Options with { VirtioSlots = [6, 7] }));
        int disk = dts.IndexOf("virtio_mmio@10008000", StringComparison.Ordinal), net = dts.IndexOf("virtio_mmio@10007000", StringComparison.Ordinal);
        Assert.True(disk > 0 && net > disk, "slot 7 (0x10008000) is not listed before slot 6");
        Assert.DoesNotContain("virtio_mmio@10001000", dts, StringComparison.Ordinal);
        Assert.DoesNotContain("virtio_mmio", Dts(Dtb()), StringComparison.Ordinal);
    }
}
