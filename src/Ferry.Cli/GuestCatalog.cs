using System.Reflection;
using Ferry.Machine.Board;

namespace Ferry.Cli;

/// <summary>Resolves an IMAGE argument: a file path, or the name of a built-in guest (hello, kvstore, ...).</summary>
internal static class GuestCatalog
{
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
            using Stream s = Assembly.GetExecutingAssembly().GetManifestResourceStream($"guests/{name}.elf")!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            loaded = GuestImage.Parse(name, ms.ToArray());
        }
        else
        {
            throw new GuestImageException($"{image}: no such file, and not a built-in guest ({string.Join(", ", BuiltIn)})");
        }

        return string.IsNullOrEmpty(config) ? loaded : loaded.WithConfig(GuestImage.ParseConfig(config));
    }
}
