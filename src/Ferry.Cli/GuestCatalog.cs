using System.Reflection;
using Ferry.Host;
using Ferry.Machine.Board;

namespace Ferry.Cli;

/// <summary>
/// Resolves an IMAGE argument: a file path, or the name of a built-in guest (hello, kvstore, ...);
/// and the files of a Linux boot: the built-in kernel, initramfs and OpenSBI (guests/linux/bin,
/// guests/firmware, embedded like the ELF guests) or the user's.
/// </summary>
internal static class GuestCatalog
{
    /// <summary>The IMAGE name that boots the built-in Linux kernel and initramfs.</summary>
    public const string Linux = "linux";

    public static IReadOnlyList<string> BuiltIn { get; } = typeof(GuestCatalog).Assembly
        .GetManifestResourceNames()
        .Where(n => n.StartsWith("guests/", StringComparison.Ordinal))
        .Select(n => Path.GetFileNameWithoutExtension(n))
        .Order()
        .ToArray();

    public static GuestImage Resolve(string image, string? config = null)
    {
        GuestImage loaded;
        if (File.Exists(image))
        {
            loaded = GuestImage.Load(image);
        }
        else if (!image.Contains('/') && BuiltIn.Contains(Path.GetFileNameWithoutExtension(image)))
        {
            string name = Path.GetFileNameWithoutExtension(image);
            loaded = GuestImage.Parse(name, Resource($"guests/{name}.elf"));
        }
        else
        {
            throw new GuestImageException($"{image}: no such file, and not a built-in guest ({string.Join(", ", BuiltIn.Append(Linux))})");
        }

        return string.IsNullOrEmpty(config) ? loaded : loaded.WithConfig(GuestImage.ParseConfig(config));
    }

    /// <summary>
    /// The files of a Linux boot. <paramref name="kernel"/> and <paramref name="initrd"/> are paths,
    /// or null for the built-in ones; <paramref name="bios"/> is a path, "default" (the built-in
    /// fw_dynamic.bin), "jump" (the built-in fw_jump.bin) or "none" (the kernel at 0x8000_0000 in M mode).
    /// The command line is <paramref name="append"/>, or the default one for the built-in kernel,
    /// followed by ferry.KEY=VALUE for each --config pair.
    /// </summary>
    public static LinuxBootFiles ResolveLinux(string? kernel, string? initrd, string? append, string? bios, string? config)
    {
        string commandLine = append ?? (kernel is null ? LinuxBoot.DefaultCommandLine : "");
        foreach (string pair in (config ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || pair.AsSpan(eq + 1).ContainsAny(" \t\"") || pair.AsSpan(0, eq).ContainsAny(" \t\"="))
            {
                throw new GuestImageException($"'{pair}' is not key=value (for Linux, each becomes ferry.key=value on the command line)");
            }

            commandLine = $"{commandLine} ferry.{pair}".TrimStart();
        }

        byte[]? firmware = (bios ?? "default") switch
        {
            "default" => Resource("firmware/fw_dynamic.bin"),
            "jump" => Resource("firmware/fw_jump.bin"),
            "none" => null,
            string path => ReadFile(path, "--bios"),
        };

        return new LinuxBootFiles
        {
            Firmware = firmware,
            Kernel = kernel is null ? Resource("linux/Image.gz") : ReadFile(kernel, "--kernel"),
            KernelName = kernel ?? "Image.gz",
            Initrd = initrd is null ? (kernel is null ? Resource("linux/initramfs.cpio.gz") : null) : ReadFile(initrd, "--initrd"),
            CommandLine = commandLine,
        };
    }

    /// <summary>The files of a Linux boot as the control API takes them.</summary>
    public static LinuxBootRequest Request(LinuxBootFiles files) => new()
    {
        Firmware = files.Firmware is null ? null : Convert.ToBase64String(files.Firmware),
        Kernel = Convert.ToBase64String(files.Kernel),
        Initrd = files.Initrd is null ? null : Convert.ToBase64String(files.Initrd),
        CommandLine = files.CommandLine,
    };

    private static byte[] ReadFile(string path, string option) => GuestImage.ReadFile(path, $"{option} {path}");

    private static byte[] Resource(string name)
    {
        using Stream s = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
            ?? throw new GuestImageException($"{name}: not built into this ferry");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }
}
