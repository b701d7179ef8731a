namespace Ferry.Benchmarks.Common;

/// <summary>
/// Paths in the repository, found by walking up to the directory holding Ferry.slnx (from the
/// binary, which BenchmarkDotNet runs from a generated folder under bench/, or from the current
/// directory). FERRY_ROOT overrides.
/// </summary>
internal static class Repo
{
    private static readonly Lazy<string> RootPath = new(FindRoot);

    public static string Root => RootPath.Value;

    public static string Guest(string name) => Path.Combine(Root, "guests", "bin", name + ".elf");

    private static string FindRoot()
    {
        string? env = Environment.GetEnvironmentVariable("FERRY_ROOT");
        if (!string.IsNullOrEmpty(env) && File.Exists(Path.Combine(env, "Ferry.slnx")))
        {
            return env;
        }

        foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "Ferry.slnx")))
                {
                    return d.FullName;
                }
            }
        }

        throw new InvalidOperationException($"no Ferry.slnx above {AppContext.BaseDirectory} or {Environment.CurrentDirectory} (set FERRY_ROOT)");
    }
}
