using System.CommandLine;
using System.Net;
using Ferry.Host;

namespace Ferry.Cli;

/// <summary>`ferry host`: the host agent.</summary>
internal static class HostCommand
{
    public static Command Create()
    {
        var listen = new Option<string>("--listen") { Description = "migration data endpoint ADDR:PORT (port 0: any free port)", DefaultValueFactory = _ => "127.0.0.1:7700" };
        var api = new Option<string?>("--api") { Description = "control API URL (default: the listen address, port + 1; port 0: any free port)" };
        var secret = Common.SecretOption();
        var name = new Option<string?>("--name") { Description = "this host's name in statuses and reports" };
        var noWarmUp = new Option<bool>("--no-warm-up") { Description = "skip the start-up self-migration that compiles the migration code ahead of real downtimes" };
        var faultPriority = new Option<int>("--fault-priority")
        {
            Description = "SO_PRIORITY of fault-connection packets, for the host's qdisc (6: interactive band; an htb class id major<<16|minor: that class; above 6 needs CAP_NET_ADMIN)",
            DefaultValueFactory = _ => 6,
        };
        var advertise = new Option<string?>("--advertise") { Description = "HOST:PORT that peers dial for this host's data endpoint (default: the listen address)" };
        var peerTimeout = new Option<string>("--peer-timeout") { Description = "migrations started here declare the destination dead after this much silence", DefaultValueFactory = _ => "5s" };
        var reconnectWindow = new Option<string>("--reconnect-window") { Description = "a migration started here that lost its destination after the switchover reconnects automatically for this long", DefaultValueFactory = _ => "60s" };
        var stateDir = new Option<string?>("--state-dir") { Description = "keep the pages an outgoing post-copy migration still owes after its switchover here (fsync'd), so that this host restarted on the same directory serves them after a crash" };
        var cmd = new Command("host", "Run a host agent: runs VMs, serves the control API, accepts incoming migrations")
        {
            listen, api, secret, name, noWarmUp, faultPriority, advertise, peerTimeout, reconnectWindow, stateDir,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            IPEndPoint data = ParseEndpoint(p.GetValue(listen)!);
            string? advertised = p.GetValue(advertise);
            if (advertised is not null && (advertised.LastIndexOf(':') is int colon && (colon <= 0 || !int.TryParse(advertised.AsSpan(colon + 1), out int port) || port is <= 0 or > 65535)))
            {
                throw new CliException($"--advertise '{advertised}' is not HOST:PORT");
            }

            TimeSpan timeout = Common.ParseDuration(p.GetValue(peerTimeout)!);
            TimeSpan window = Common.ParseDuration(p.GetValue(reconnectWindow)!);
            var check = new Ferry.Migration.MigrationOptions { PeerTimeout = timeout, ReconnectWindow = window };
            try
            {
                check.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }
            string apiUrl = p.GetValue(api) ?? $"http://{Format(data.Address)}:{(data.Port == 0 ? 0 : data.Port + 1)}";
            var options = new HostOptions
            {
                DataEndpoint = data,
                ApiUrl = apiUrl,
                Secret = p.GetValue(secret) ?? Environment.GetEnvironmentVariable("FERRY_SECRET"),
                Name = p.GetValue(name) ?? $"{Environment.MachineName}:{data.Port}",
                WarmUpImage = p.GetValue(noWarmUp) ? null : GuestCatalog.Resolve("dirty", "size_mib=2"),
                FaultSocketPriority = p.GetValue(faultPriority),
                Advertise = advertised,
                PeerTimeout = timeout,
                ReconnectWindow = window,
                StateDir = p.GetValue(stateDir),
            };
            await using var agent = new HostAgent(options);
            await agent.StartAsync();
            System.Console.Out.WriteLine($"ferry host: api {agent.ApiUrl} data {agent.DataEndpoint}");
            System.Console.Out.Flush();
            await agent.WaitForShutdownAsync(ct);
            return 0;
        }));
        return cmd;
    }

    private static string Format(IPAddress a) => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{a}]" : a.ToString();

    private static IPEndPoint ParseEndpoint(string text)
    {
        if (!IPEndPoint.TryParse(text, out IPEndPoint? endpoint))
        {
            throw new CliException($"'{text}' is not ADDR:PORT (example: 127.0.0.1:7700)");
        }

        return endpoint;
    }
}

internal static class Common
{
    public static Option<string> HostOption(string name = "--host", string description = "host agent API URL") => new(name)
    {
        Description = description + " (default: $FERRY_HOST or http://127.0.0.1:7701)",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("FERRY_HOST") ?? "http://127.0.0.1:7701",
    };

    public static Option<string?> SecretOption() => new("--secret") { Description = "shared API secret (default: $FERRY_SECRET)" };

    public static Option<bool> JsonOption() => new("--json") { Description = "print JSON" };

    public static string? Secret(ParseResult p, Option<string?> option) => p.GetValue(option) ?? Environment.GetEnvironmentVariable("FERRY_SECRET");

    public static TimeSpan ParseDuration(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        double unit = 1;
        if (t.EndsWith("ms", StringComparison.Ordinal))
        {
            t = t[..^2];
        }
        else if (t.EndsWith("us", StringComparison.Ordinal))
        {
            unit = 0.001;
            t = t[..^2];
        }
        else if (t.EndsWith('s'))
        {
            unit = 1000;
            t = t[..^1];
        }

        if (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || v <= 0)
        {
            throw new CliException($"'{text}' is not a duration (examples: 300ms, 2s)");
        }

        return TimeSpan.FromMilliseconds(v * unit);
    }
}
