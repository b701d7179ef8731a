using System.Diagnostics;
using System.Globalization;

namespace Ferry.Cli.Bench;

/// <summary>
/// A real link for `ferry bench --link netns`: the destination side (Ferry's host agent B and
/// QEMU's destination) runs in a network namespace of its own, joined to this one by a veth
/// pair whose rate the kernel sets with tc's hierarchical token bucket (htb) in each direction:
/// the link's rate, shared by two classes, an urgent one (<see cref="UrgentClass"/>, first
/// whenever it has packets: a socket whose SO_PRIORITY names it, as Ferry's fault connection)
/// and the default one for everything else, as strict priority queues in front of a real NIC.
/// Migrations then cross the kernel's link with its real queueing, and neither Ferry nor QEMU
/// uses its own rate limiter. Needs root (CAP_NET_ADMIN) and iproute2.
/// </summary>
internal sealed class NetnsLink : IAsyncDisposable
{
    /// <summary>This side's and the namespace's addresses on the veth pair (a /30 of the project's own).</summary>
    public const string SourceAddress = "10.213.77.1";
    public const string DestinationAddress = "10.213.77.2";

    /// <summary>The htb class (1:10) of urgent traffic, as a socket's SO_PRIORITY (major &lt;&lt; 16 | minor).</summary>
    public const int UrgentClass = 0x10010;

    private NetnsLink(string ns, string sourceDevice, string destinationDevice, long bitsPerSecond)
    {
        Namespace = ns;
        SourceDevice = sourceDevice;
        DestinationDevice = destinationDevice;
        BitsPerSecond = bitsPerSecond;
    }

    public string Namespace { get; }

    public string SourceDevice { get; }

    public string DestinationDevice { get; }

    public long BitsPerSecond { get; }

    /// <summary>The command prefix that runs a program in the destination's namespace.</summary>
    public string[] Wrap => ["ip", "netns", "exec", Namespace];

    /// <summary>Creates the namespace, the veth pair and the shaping; a clear error if this process may not.</summary>
    public static async Task<NetnsLink> CreateAsync(long bitsPerSecond, CancellationToken ct)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new CliException("--link netns needs Linux network namespaces");
        }

        if (!Environment.IsPrivilegedProcess)
        {
            throw new CliException("--link netns needs root (it creates a network namespace, a veth pair and tc qdiscs); run as root or use the default --link shaper");
        }

        if (bitsPerSecond <= 0)
        {
            throw new CliException("--link netns needs a link rate (--bandwidth)");
        }

        foreach (string tool in (string[])["ip", "tc"])
        {
            if (!OnPath(tool))
            {
                throw new CliException($"--link netns needs '{tool}' (Debian's iproute2)");
            }
        }

        string id = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        var link = new NetnsLink($"ferry-bench-{id}", $"fbs{id}", $"fbd{id}", bitsPerSecond);
        try
        {
            await link.SetUpAsync(ct);
            return link;
        }
        catch
        {
            await link.DisposeAsync();
            throw;
        }
    }

    private async Task SetUpAsync(CancellationToken ct)
    {
        string rate = BitsPerSecond.ToString(CultureInfo.InvariantCulture) + "bit";

        // A bucket must hold at least one timer tick's worth of traffic (and a TSO burst), or the
        // link cannot reach its rate.
        string burst = Math.Max(64 << 10, BitsPerSecond / 8 / 250).ToString(CultureInfo.InvariantCulture);
        await RunAsync(ct, "ip", "netns", "add", Namespace);
        await RunAsync(ct, "ip", "link", "add", SourceDevice, "type", "veth", "peer", "name", DestinationDevice);
        await RunAsync(ct, "ip", "link", "set", DestinationDevice, "netns", Namespace);
        await RunAsync(ct, "ip", "addr", "add", SourceAddress + "/30", "dev", SourceDevice);
        await RunAsync(ct, "ip", "link", "set", SourceDevice, "up");
        await RunAsync(ct, [.. Wrap, "ip", "addr", "add", DestinationAddress + "/30", "dev", DestinationDevice]);
        await RunAsync(ct, [.. Wrap, "ip", "link", "set", DestinationDevice, "up"]);
        await RunAsync(ct, [.. Wrap, "ip", "link", "set", "lo", "up"]);
        foreach ((string[] prefix, string device) in new[] { (Array.Empty<string>(), SourceDevice), (Wrap, DestinationDevice) })
        {
            string[] tc = [.. prefix, "tc"];
            await RunAsync(ct, [.. tc, "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "20"]);
            await RunAsync(ct, [.. tc, "class", "add", "dev", device, "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate, "burst", burst, "cburst", burst]);

            // Urgent: the whole rate guaranteed, served first; bulk: borrows what urgent leaves.
            await RunAsync(ct, [.. tc, "class", "add", "dev", device, "parent", "1:1", "classid", "1:10", "htb", "rate", rate, "ceil", rate, "prio", "0", "burst", burst]);
            await RunAsync(ct, [.. tc, "class", "add", "dev", device, "parent", "1:1", "classid", "1:20", "htb", "rate", "1mbit", "ceil", rate, "prio", "1", "burst", burst, "cburst", burst]);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            // Deleting the namespace deletes the veth pair and its qdiscs.
            await RunAsync(CancellationToken.None, "ip", "netns", "del", Namespace);
        }
        catch (CliException)
        {
        }

        try
        {
            await RunAsync(CancellationToken.None, "ip", "link", "del", SourceDevice);
        }
        catch (CliException)
        {
            // gone with the namespace
        }
    }

    internal static async Task<string> RunAsync(CancellationToken ct, params string[] command)
    {
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in command.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi) ?? throw new CliException($"could not run {command[0]}");
        Task<string> output = p.StandardOutput.ReadToEndAsync(ct);
        Task<string> error = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0)
        {
            throw new CliException($"'{string.Join(' ', command)}' failed: {(await error).Trim()}");
        }

        return await output;
    }

    private static bool OnPath(string tool)
        => (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Append("/usr/sbin").Append("/sbin")
            .Any(dir => File.Exists(Path.Combine(dir, tool)));
}
