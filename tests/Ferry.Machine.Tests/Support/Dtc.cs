using System.Diagnostics;

namespace Ferry.Machine.Tests.Support;

/// <summary>The device-tree compiler (Debian's device-tree-compiler), to check the trees Ferry writes.</summary>
internal static class Dtc
{
    public const string SkipReason = "dtc is not on PATH (apt-get install device-tree-compiler): device-tree check skipped";

    private static readonly Lazy<string?> ExecutablePath = new(() =>
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            string candidate = Path.Combine(dir, "dtc");
            if (dir.Length > 0 && File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    });

    public static bool Available => ExecutablePath.Value is not null;

    /// <summary>Runs dtc on <paramref name="input"/>; returns exit code, stdout bytes and stderr.</summary>
    public static (int ExitCode, byte[] Output, string Errors) Run(byte[] input, params string[] args)
    {
        string exe = ExecutablePath.Value ?? throw new InvalidOperationException(SkipReason);
        var start = new ProcessStartInfo("nice")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "-n", "19", exe }.Concat(args).Append("-"))
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start dtc");
        using var stdout = new MemoryStream();
        Task copy = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        process.StandardInput.BaseStream.Write(input);
        process.StandardInput.Close();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "dtc did not finish within 30 s");
        copy.Wait(TimeSpan.FromSeconds(10));
        return (process.ExitCode, stdout.ToArray(), stderr.Result);
    }
}

/// <summary>A fact that needs dtc: skipped, with the reason, when it is absent.</summary>
public sealed class DtcFactAttribute : FactAttribute
{
    public DtcFactAttribute()
    {
        if (!Dtc.Available)
        {
            Skip = Dtc.SkipReason;
        }
    }
}

/// <summary>A minimal FDT reader for tests: the header, the reservation block and every node's properties by path.</summary>
internal sealed class FdtReader
{
    public FdtReader(byte[] fdt)
    {
        static uint U32(byte[] b, int at) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(at));
        Assert.Equal(0xD00DFEEDu, U32(fdt, 0));
        Assert.Equal((uint)fdt.Length, U32(fdt, 4));
        int structOffset = (int)U32(fdt, 8), stringsOffset = (int)U32(fdt, 12), rsvOffset = (int)U32(fdt, 16);
        Version = U32(fdt, 20);
        LastCompatibleVersion = U32(fdt, 24);
        int stringsSize = (int)U32(fdt, 32), structSize = (int)U32(fdt, 36);
        Assert.Equal(0, rsvOffset % 8);
        Assert.Equal(0, structOffset % 4);
        Assert.True(stringsOffset + stringsSize <= fdt.Length && structOffset + structSize <= fdt.Length);

        for (int at = rsvOffset; ; at += 16)
        {
            ulong address = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(fdt.AsSpan(at));
            ulong size = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(fdt.AsSpan(at + 8));
            if (address == 0 && size == 0)
            {
                break;
            }

            Reservations.Add((address, size));
        }

        var path = new Stack<string>();
        int p = structOffset;
        while (true)
        {
            uint token = U32(fdt, p);
            p += 4;
            switch (token)
            {
                case 1:
                    int end = Array.IndexOf(fdt, (byte)0, p);
                    string name = System.Text.Encoding.UTF8.GetString(fdt, p, end - p);
                    path.Push(path.Count == 0 ? "/" : (path.Peek() == "/" ? "/" + name : path.Peek() + "/" + name));
                    Nodes[path.Peek()] = [];
                    p = (end + 4) & ~3;
                    break;
                case 2:
                    path.Pop();
                    break;
                case 3:
                    int length = (int)U32(fdt, p), nameOffset = (int)U32(fdt, p + 4);
                    int nameEnd = Array.IndexOf(fdt, (byte)0, stringsOffset + nameOffset);
                    string prop = System.Text.Encoding.UTF8.GetString(fdt, stringsOffset + nameOffset, nameEnd - stringsOffset - nameOffset);
                    Nodes[path.Peek()][prop] = fdt.AsSpan(p + 8, length).ToArray();
                    p = (p + 8 + length + 3) & ~3;
                    break;
                case 4:
                    break;
                case 9:
                    Assert.Empty(path);
                    Assert.Equal(structOffset + structSize, p);
                    return;
                default:
                    throw new InvalidDataException($"FDT token {token} at {p - 4}");
            }
        }
    }

    public uint Version { get; }

    public uint LastCompatibleVersion { get; }

    public List<(ulong Address, ulong Size)> Reservations { get; } = [];

    public Dictionary<string, Dictionary<string, byte[]>> Nodes { get; } = [];

    public byte[] Prop(string node, string name)
    {
        Assert.True(Nodes.ContainsKey(node), $"no node {node}");
        Assert.True(Nodes[node].ContainsKey(name), $"{node} has no property {name}");
        return Nodes[node][name];
    }

    public uint[] Cells(string node, string name)
    {
        byte[] v = Prop(node, name);
        Assert.Equal(0, v.Length % 4);
        return Enumerable.Range(0, v.Length / 4).Select(i => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(v.AsSpan(4 * i))).ToArray();
    }

    public string[] Strings(string node, string name)
    {
        byte[] v = Prop(node, name);
        Assert.Equal(0, v[^1]);
        return System.Text.Encoding.UTF8.GetString(v, 0, v.Length - 1).Split('\0');
    }
}
