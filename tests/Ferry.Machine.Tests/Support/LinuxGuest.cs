using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Machine.Tests.Support;

/// <summary>The Linux guest of guests/linux/bin with Debian's OpenSBI (guests/firmware), booted as QEMU does.</summary>
internal static class LinuxGuest
{
    public const ulong Memory = 256UL << 20;

    /// <summary>kvstore's first report with its default parameters (guests/linux/README.md): the same on every boot.</summary>
    public const string KvstoreFirstOps = "ops 1000000 hits 949448 sum 0x9d5bff010d937378";

    private static readonly Lazy<byte[]> KernelGz = new(() => File.ReadAllBytes(Path.Combine(Repo.LinuxBin, "Image.gz")));
    private static readonly Lazy<byte[]> InitrdGz = new(() => File.ReadAllBytes(Path.Combine(Repo.LinuxBin, "initramfs.cpio.gz")));

    public static byte[] Kernel => KernelGz.Value;

    public static byte[] Initrd => InitrdGz.Value;

    public static byte[] Firmware(string name = "fw_dynamic.bin") => File.ReadAllBytes(Repo.Firmware(name));

    public static LinuxBootFiles Files(string commandLine, string firmware = "fw_dynamic.bin") => new()
    {
        Firmware = Firmware(firmware),
        Kernel = Kernel,
        Initrd = Initrd,
        CommandLine = commandLine,
    };

    public static VirtMachine Boot(string commandLine, string firmware = "fw_dynamic.bin", ulong memory = Memory, ExecutionEngine? engine = null)
    {
        VirtMachine machine = Engines.Use(new VirtMachine(new MachineConfig { MemorySize = memory, Icount = true, IdleSleep = false }), engine);
        LinuxBoot.Load(machine, Files(commandLine, firmware));
        return machine;
    }

    /// <summary>The console as lines, without the 8250 driver's carriage returns.</summary>
    public static string[] Lines(byte[] console) =>
        Encoding.ASCII.GetString(console).Replace("\r", "", StringComparison.Ordinal).Split('\n');
}
