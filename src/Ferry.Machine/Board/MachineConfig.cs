namespace Ferry.Machine.Board;

/// <summary>
/// What defines a VM besides its memory content: memory size and clock mode. Carried in
/// snapshots and in the migration handshake, where the destination checks it against its own.
/// </summary>
public sealed record MachineConfig
{
    public const ulong DefaultMemorySize = 256UL << 20;

    public ulong MemorySize { get; init; } = DefaultMemorySize;

    /// <summary>Instruction-counted time: a run is a pure function of image and instruction count.</summary>
    public bool Icount { get; init; }

    /// <summary>
    /// In icount mode, whether WFI also waits the host time the skipped guest time stands for
    /// (so an idle guest is idle), or skips it at once. Either way the run is deterministic.
    /// </summary>
    public bool IdleSleep { get; init; } = true;

    /// <summary>Parses sizes such as 256M, 256MiB, 1G, 1GiB, 65536K or a byte count.</summary>
    public static ulong ParseSize(string text)
    {
        string t = text.Trim();
        ulong unit = 1;
        string[] suffixes = ["KiB", "MiB", "GiB", "KB", "MB", "GB", "K", "M", "G"];
        foreach (string s in suffixes)
        {
            if (t.EndsWith(s, StringComparison.OrdinalIgnoreCase))
            {
                unit = char.ToUpperInvariant(s[0]) switch { 'K' => 1UL << 10, 'M' => 1UL << 20, _ => 1UL << 30 };
                t = t[..^s.Length];
                break;
            }
        }

        if (!ulong.TryParse(t, out ulong n) || n == 0)
        {
            throw new FormatException($"'{text}' is not a size (examples: 256M, 1G)");
        }

        return checked(n * unit);
    }
}
