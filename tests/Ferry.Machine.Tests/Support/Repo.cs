namespace Ferry.Machine.Tests.Support;

/// <summary>Paths in the repository: found by walking up from the test binary to the directory holding Ferry.slnx.</summary>
internal static class Repo
{
    private static readonly Lazy<string> RootPath = new(FindRoot);

    public static string Root => RootPath.Value;

    public static string GuestsBin => Path.Combine(Root, "guests", "bin");

    public static string IsaBin => Path.Combine(Root, "guests", "isa", "bin");

    public static string LinuxBin => Path.Combine(Root, "guests", "linux", "bin");

    public static string Firmware(string name) => Path.Combine(Root, "guests", "firmware", name);

    public static string Guest(string name) => Path.Combine(GuestsBin, name + ".elf");

    public static IReadOnlyList<string> GuestNames => ElfNames(GuestsBin);

    public static IReadOnlyList<string> IsaTestNames => ElfNames(IsaBin);

    private static string[] ElfNames(string directory) => Directory.Exists(directory)
        ? Directory.GetFiles(directory, "*.elf").Select(f => Path.GetFileNameWithoutExtension(f)!).Order(StringComparer.Ordinal).ToArray()
        : [];

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Ferry.slnx")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException($"no Ferry.slnx above {AppContext.BaseDirectory}");
    }
}
