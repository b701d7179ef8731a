using System.Diagnostics;
using System.Globalization;

namespace Ferry.Cli.Bench;

/// <summary>
/// Estimates a guest's speed (MIPS) under QEMU from its own console progress. QEMU without
/// <c>-icount</c> exposes no instruction count, so this uses the per-line instruction costs that
/// guests/README.md documents for the CPU-bound guests:
/// kvstore <c>ops N</c> (about 125 instructions per op; 183 as a Linux process, kernel time
/// included: Ferry's exact count over 600 M instructions, `ferry run linux --icount
/// --config workload=kvstore,table_mib=128`), dirty <c>pass N</c> (about 0.9 M per
/// 64 MiB pass, unpaced only) and verify <c>OK pass N</c> (about 72 M per 32 MiB pass).
/// idle, hello, compute (one line at the end) and paced dirty give null.
/// </summary>
internal static class QemuGuestProgress
{
    private const double MinimumWindowSeconds = 0.2;
    private static readonly System.Buffers.SearchValues<char> WordCharacters =
        System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");

    public static double? EstimateMips(IReadOnlyList<QemuConsoleLine> lines)
    {
        List<(long Timestamp, double Instructions)> samples = Samples(lines, out _, out _);
        if (samples.Count < 3)
        {
            return null;
        }

        return Rate(samples, long.MinValue, long.MaxValue);
    }

    /// <summary>
    /// True once the console shows a guest whose progress lines measure its speed (its config
    /// line seen, and the guest one of those above), so a warm-up may wait for enough of them.
    /// </summary>
    public static bool ReportsProgress(IReadOnlyList<QemuConsoleLine> lines)
    {
        Samples(lines, out string? guest, out Dictionary<string, ulong> config);
        if (guest is null)
        {
            return false;
        }

        // The line each measured guest prints, its count 1: a guest that gives instructions for one of them reports progress.
        return Instructions(guest, config, "ops 1") is not null || Instructions(guest, config, "pass 1") is not null || Instructions(guest, config, "OK pass 1") is not null;
    }

    /// <summary>
    /// The guest's speed at a migration's destination between its resume and a later instant
    /// (Stopwatch ticks): from the source's last progress line (the guest's count at the pause:
    /// its console has no header line there, so the guest and its configuration come from the
    /// source's) to the destination's last line before <paramref name="to"/>, over the whole
    /// window. A guest that printed nothing in the window made no measurable progress: 0.
    /// </summary>
    public static double? EstimateMipsBetween(IReadOnlyList<QemuConsoleLine> sourceLines, IReadOnlyList<QemuConsoleLine> lines, long from, long to)
    {
        List<(long Timestamp, double Instructions)> before = Samples(sourceLines, out string? guest, out Dictionary<string, ulong> config);
        if (guest is null || before.Count == 0 || to <= from)
        {
            return null;
        }

        double start = before[^1].Instructions, end = start;
        foreach (QemuConsoleLine line in lines)
        {
            if (line.Timestamp <= to && Instructions(guest, config, line.Text.Trim()) is double i && i > end)
            {
                end = i;
            }
        }

        return (end - start) / ((double)(to - from) / Stopwatch.Frequency) / 1e6;
    }

    private static List<(long Timestamp, double Instructions)> Samples(IReadOnlyList<QemuConsoleLine> lines, out string? guest, out Dictionary<string, ulong> config)
    {
        guest = null;
        config = [];
        var samples = new List<(long Timestamp, double Instructions)>();
        bool linux = false;
        foreach (QemuConsoleLine line in lines)
        {
            string text = line.Text.Trim();
            if (text == QemuLinuxGuest.ReadyLine)
            {
                // Linux: the workload's config line follows /init's ready line; what the boot log
                // printed before it (e.g. "workingset: timestamp_bits=62 ...") is not a guest's.
                linux = true;
                guest = null;
                config.Clear();
                samples.Clear();
                continue;
            }

            if (guest is null)
            {
                // The first line "NAME: key=value ..." is the config the guest actually read
                // (NAME a plain word: Linux's boot log has lines like "Kernel command line: ...").
                int colon = text.IndexOf(':');
                if (colon > 0 && text.Contains('=') && text.AsSpan(0, colon).IndexOfAnyExcept(WordCharacters) < 0)
                {
                    guest = linux ? "linux-" + text[..colon] : text[..colon];
                    foreach (string kv in text[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    {
                        int eq = kv.IndexOf('=');
                        if (eq > 0 && ulong.TryParse(kv.AsSpan(eq + 1), NumberStyles.None, CultureInfo.InvariantCulture, out ulong v))
                        {
                            config[kv[..eq]] = v;
                        }
                    }
                }

                continue;
            }

            if (Instructions(guest, config, text) is double i)
            {
                samples.Add((line.Timestamp, i));
            }
        }

        return samples;
    }

    private static double? Instructions(string guest, Dictionary<string, ulong> config, string text) => guest switch
    {
        "kvstore" => Counter(text, "ops ") * 125.0,
        "linux-kvstore" => Counter(text, "ops ") * 183.0,
        "dirty" when config.GetValueOrDefault("rate") == 0 => Counter(text, "pass ") * 0.9e6 * config.GetValueOrDefault("size_mib", 64UL) / 64.0,
        "verify" => Counter(text, "OK pass ") * 72e6 * config.GetValueOrDefault("size_mib", 32UL) / 32.0,
        _ => null,
    };

    private static double? Rate(List<(long Timestamp, double Instructions)> samples, long from, long to)
    {
        (long t0, double i0) = samples[0];
        (long t1, double i1) = samples[^1];
        double seconds = (double)(t1 - t0) / Stopwatch.Frequency;
        bool window = from != long.MinValue;
        return (window || seconds >= MinimumWindowSeconds) && seconds > 0 && i1 >= i0 ? (i1 - i0) / seconds / 1e6 : null;
    }

    /// <summary>N from a line "PREFIX N ...", or null.</summary>
    private static ulong? Counter(string text, string prefix)
    {
        if (!text.StartsWith(prefix, StringComparison.Ordinal))
        {
            return null;
        }

        ReadOnlySpan<char> rest = text.AsSpan(prefix.Length);
        int end = rest.IndexOf(' ');
        return ulong.TryParse(end < 0 ? rest : rest[..end], NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) ? n : null;
    }
}
