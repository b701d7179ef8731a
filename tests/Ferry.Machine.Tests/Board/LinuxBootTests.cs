using System.Buffers.Binary;
using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Devices;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Board;

/// <summary>The loader's layout and registers against QEMU 7.2's rules (hw/riscv/boot.c), without running the guest.</summary>
public sealed class LinuxBootTests
{
    private const ulong Mib = 1 << 20;

    [Theory]
    [InlineData(64, 0x83e0_0000, 0x8220_0000)]
    [InlineData(128, 0x87e0_0000, 0x8420_0000)]
    [InlineData(256, 0x8fe0_0000, 0x8820_0000)]
    [InlineData(1024, 0xbfe0_0000, 0x8820_0000)]
    [InlineData(2048, 0xbfe0_0000, 0x8820_0000)] // the tree stays below 3 GiB
    public void Addresses_AreQemus(ulong mib, ulong dtb, ulong initrd)
    {
        Assert.Equal(dtb, LinuxBoot.DeviceTreeAddress(mib * Mib));
        Assert.Equal(initrd, LinuxBoot.InitrdAddress(LinuxBoot.KernelAddress, mib * Mib));
    }

    [Fact]
    public void MaskRom_HoldsQemusResetVectorAndFwDynamicInfo()
    {
        using var m = new VirtMachine(new MachineConfig { MemorySize = 256 * Mib });
        ulong Read(ulong address)
        {
            Assert.True(m.Rom.Read(address - MaskRom.DefaultBase, 8, out ulong v));
            return v;
        }

        // auipc t0,0; addi a2,t0,0x28; csrr a0,mhartid; ld a1,32(t0); ld t0,24(t0); jr t0
        Assert.Equal(0x0282_8613_0000_0297UL, Read(0x1000));
        Assert.Equal(0x0202_b583_f140_2573UL, Read(0x1008));
        Assert.Equal(0x0002_8067_0182_b283UL, Read(0x1010));
        Assert.Equal(0x8000_0000UL, Read(0x1018));
        Assert.Equal(0x8fe0_0000UL, Read(0x1020));
        Assert.Equal(0x1028UL, MaskRom.FwDynamicInfoAddress);
        Assert.Equal(0x4942_534fUL, Read(0x1028)); // magic "OSBI"
        Assert.Equal(2UL, Read(0x1030)); // version
        Assert.Equal(0x8020_0000UL, Read(0x1038)); // next_addr
        Assert.Equal(1UL, Read(0x1040)); // next_mode: S
        Assert.Equal(0UL, Read(0x1048)); // options
        Assert.Equal(ulong.MaxValue, Read(0x1050)); // boot_hart -1

        // Read-only: a write is ignored, as QEMU's ROM ignores it.
        Assert.True(m.Rom.Write(0x28, 8, 0));
        Assert.Equal(0x4942_534fUL, Read(0x1028));
    }

    [Fact]
    public void ReadKernelImage_GunzipsImageGz_AndChecksTheHeader()
    {
        byte[] image = LinuxBoot.ReadKernelImage(LinuxGuest.Kernel, "Image.gz");
        Assert.Equal(2_840_064, image.Length); // guests/linux/README.md
        Assert.Equal("RISCV\0\0\0"u8.ToArray(), image.AsSpan(0x30, 8).ToArray());
        Assert.Same(image, LinuxBoot.ReadKernelImage(image, "Image")); // raw images are taken as they are

        var notImage = Assert.Throws<GuestImageException>(() => LinuxBoot.ReadKernelImage(File.ReadAllBytes(Repo.Guest("hello")), "hello.elf"));
        Assert.Contains("not a RISC-V Linux Image", notImage.Message, StringComparison.Ordinal);
        var badGzip = Assert.Throws<GuestImageException>(() => LinuxBoot.ReadKernelImage([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff], "broken.gz")); // a reserved deflate block type
        Assert.Contains("bad gzip data", badGzip.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadKernelImage_GivesTheLastGunzippedImageAgainForTheSameBytesOnly()
    {
        byte[] image = LinuxBoot.ReadKernelImage(LinuxGuest.Kernel, "Image.gz");
        Assert.Same(image, LinuxBoot.ReadKernelImage((byte[])LinuxGuest.Kernel.Clone(), "Image.gz")); // the same bytes, another array

        // Other gzip bytes (the same Image, compressed again) are gunzipped, not taken from the last.
        using var recompressed = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(recompressed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            gz.Write(image);
        }

        byte[] again = LinuxBoot.ReadKernelImage(recompressed.ToArray(), "fast.gz");
        Assert.NotSame(image, again);
        Assert.Equal(image, again);
    }

    [Fact]
    public void Load_PlacesFirmwareKernelInitrdAndTree_AndSetsTheRegistersTheResetVectorWould()
    {
        using VirtMachine m = LinuxGuest.Boot("console=ttyS0 ferry.workload=idle");
        byte[] firmware = LinuxGuest.Firmware();
        byte[] kernel = LinuxBoot.ReadKernelImage(LinuxGuest.Kernel, "Image.gz");
        byte[] initrd = LinuxGuest.Initrd;
        Assert.Equal(firmware, Physical(m, 0x8000_0000, firmware.Length));
        Assert.Equal(kernel, Physical(m, 0x8020_0000, kernel.Length));
        Assert.Equal(initrd, Physical(m, 0x8820_0000, initrd.Length));

        byte[] header = Physical(m, 0x8fe0_0000, 8);
        Assert.Equal(0xd00d_feedu, BinaryPrimitives.ReadUInt32BigEndian(header));
        var tree = new FdtReader(Physical(m, 0x8fe0_0000, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4))));
        Assert.Equal("console=ttyS0 ferry.workload=idle\0", Encoding.ASCII.GetString(tree.Prop("/chosen", "bootargs")));
        Assert.Equal(0x8820_0000UL, BinaryPrimitives.ReadUInt64BigEndian(tree.Prop("/chosen", "linux,initrd-start")));
        Assert.Equal(0x8820_0000UL + (ulong)initrd.Length, BinaryPrimitives.ReadUInt64BigEndian(tree.Prop("/chosen", "linux,initrd-end")));
        Assert.Equal(LinuxBoot.RngSeed.ToArray(), tree.Prop("/chosen", "rng-seed"));
        Assert.Equal(LinuxBoot.Isa + "\0", Encoding.ASCII.GetString(tree.Prop("/cpus/cpu@0", "riscv,isa")));

        Assert.Equal(0x8000_0000UL, m.Hart.Pc);
        Assert.Equal(Ferry.Machine.Cpu.PrivilegeMode.Machine, m.Hart.Privilege);
        Assert.Equal(0UL, m.Hart.GetRegister(10));
        Assert.Equal(0x8fe0_0000UL, m.Hart.GetRegister(11));
        Assert.Equal(0x1028UL, m.Hart.GetRegister(12));
        Assert.Equal(0, m.Memory.Dirty.PopCount()); // a loaded image is the starting point, not guest writes
    }

    [Fact]
    public void WithoutFirmware_TheKernelGoesTo0x8000_0000_AsQemusBiosNone()
    {
        using var m = new VirtMachine(new MachineConfig { MemorySize = 64 * Mib, Icount = true });
        LinuxBootLayout layout = LinuxBoot.Load(m, new LinuxBootFiles { Kernel = LinuxGuest.Kernel, Initrd = LinuxGuest.Initrd });
        Assert.Equal(0x8000_0000UL, layout.KernelAddress);
        Assert.Equal(0x8000_0000UL + (32 * Mib), layout.Initrd!.Value.Start);
        Assert.Equal(0x83e0_0000UL, layout.DeviceTreeAddress);
        Assert.Equal(0x8000_0000UL, m.Hart.Pc);
    }

    [Fact]
    public void FilesThatDoNotFit_AreRefusedWithTheReason()
    {
        using var small = new VirtMachine(new MachineConfig { MemorySize = 8 * Mib });
        var initrd = Assert.Throws<GuestImageException>(() => LinuxBoot.Load(small, LinuxGuest.Files("") with { Initrd = new byte[4 * Mib] }));
        Assert.Contains("run into the device tree", initrd.Message, StringComparison.Ordinal);

        using var tiny = new VirtMachine(new MachineConfig { MemorySize = 4 * Mib });
        var kernel = Assert.Throws<GuestImageException>(() => LinuxBoot.Load(tiny, LinuxGuest.Files("") with { Initrd = null }));
        Assert.Contains("do not fit", kernel.Message, StringComparison.Ordinal);

        var firmware = Assert.Throws<GuestImageException>(() => LinuxBoot.Load(small, LinuxGuest.Files("") with { Firmware = new byte[3 * Mib] }));
        Assert.Contains("firmware", firmware.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Finisher_ActsOnTheTwoByteWriteOfOpenSbisShutdown()
    {
        using var m = new VirtMachine(new MachineConfig());
        Assert.True(m.Finisher.Write(0, 1, 0x5555)); // below QEMU's minimum access size: ignored
        Assert.Null(m.Exit);
        Assert.True(m.Finisher.Write(0, 2, 0x5555));
        Assert.Equal(new GuestExit(0, false), m.Exit);
    }

    private static byte[] Physical(VirtMachine m, ulong address, int length)
    {
        var bytes = new byte[length];
        m.Memory.ReadPhysical(address, bytes);
        return bytes;
    }
}
