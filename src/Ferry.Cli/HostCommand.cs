using System.CommandLine;
using System.Net;
using Ferry.Host;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;

namespace Ferry.Cli;

/// <summary>`ferry host`: the host agent.</summary>
internal static class HostCommand
{
    public static Command Create()
    {
        var listen = new Option<string>("--listen") { Description = "migration data endpoint ADDR:PORT (port 0: any free port)", DefaultValueFactory = _ => "127.0.0.1:7700" };
        var api = new Option<string?>("--api") { Description = "control API ADDR:PORT (default: 127.0.0.1, the listen port + 1; port 0: any free port); not loopback: a warning" };
        var secret = Common.SecretOption();
        var name = new Option<string?>("--name") { Description = "this host's name in statuses and reports" };
        var noWarmUp = new Option<bool>("--no-warm-up") { Description = "skip the start-up warm-up (a self-migration per strategy, a Linux boot in a scratch machine, and calls of its own control API) that has the JIT compile the migration's and the machine's code before a real VM depends on it" };
        var warmUpRounds = new Option<int>("--warm-up-rounds")
        {
            Description = "after the first warm-up migrations, run them this many more times (about 2 s each) so the runtime's tiering compiles the migration's hot paths optimized before a real move depends on them",
            DefaultValueFactory = _ => HostOptions.DefaultWarmUpTieringRounds,
        };
        var faultPriority = new Option<int>("--fault-priority")
        {
            Description = "SO_PRIORITY of fault-connection packets, for the host's qdisc (6: interactive band; an htb class id major<<16|minor: that class; above 6 needs CAP_NET_ADMIN)",
            DefaultValueFactory = _ => 6,
        };
        var noRealtime = new Option<bool>("--no-realtime")
        {
            Description = "never run the fault path's threads (the source's fault server, the destination's fault-reply receiver) SCHED_FIFO (by default they do where this process may: root, CAP_SYS_NICE or RLIMIT_RTPRIO; otherwise they get a short EEVDF slice)",
        };
        var handshake = new Option<string>("--handshake-timeout") { Description = "how long a migration connection may take to send its Hello", DefaultValueFactory = _ => "5s" };
        var maxPending = new Option<int>("--max-pending-connections") { Description = "migration connections not yet past their Hello at once (more are closed)", DefaultValueFactory = _ => 64 };
        var maxIncoming = new Option<int>("--max-incoming") { Description = "incoming VMs (prepared or arriving) at once", DefaultValueFactory = _ => 8 };
        var maxIncomingMemory = new Option<string>("--max-incoming-memory") { Description = "guest memory of all incoming VMs together", DefaultValueFactory = _ => "32G" };
        var maxRequest = new Option<string>("--max-request-size") { Description = "largest control API request (a VM start carries its images, base64)", DefaultValueFactory = _ => "128M" };
        var advertise = new Option<string?>("--advertise") { Description = "HOST:PORT that peers dial for this host's data endpoint (default: the listen address)" };
        var peerTimeout = new Option<string>("--peer-timeout") { Description = "migrations started here declare the destination dead after this much silence", DefaultValueFactory = _ => "5s" };
        var reconnectWindow = new Option<string>("--reconnect-window") { Description = "a migration started here that lost its destination after the switchover reconnects automatically for this long", DefaultValueFactory = _ => "60s" };
        var stateDir = new Option<string?>("--state-dir") { Description = "keep the pages an outgoing post-copy migration still owes after its switchover here (fsync'd), so that this host restarted on the same directory serves them after a crash" };
        var cmd = new Command("host", "Run a host agent: runs VMs, serves the control API, accepts incoming migrations")
        {
            listen, api, secret, name, noWarmUp, warmUpRounds, faultPriority, noRealtime, handshake, maxPending, maxIncoming, maxIncomingMemory, maxRequest, advertise, peerTimeout, reconnectWindow, stateDir,
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
            Ferry.Migration.Transport.DedicatedThread.RealtimeFaultPath = !p.GetValue(noRealtime);
            ApiCredentials credentials = secret.Resolve(p);
            string apiUrl = ApiUrl(p.GetValue(api), data, credentials.Tls is not null);
            var options = new HostOptions
            {
                DataEndpoint = data,
                ApiUrl = apiUrl,
                Secret = credentials.Secret,
                Tls = credentials.Tls,
                Name = p.GetValue(name) ?? $"{Environment.MachineName}:{data.Port}",
                WarmUpImage = p.GetValue(noWarmUp) ? null : GuestCatalog.Resolve("dirty", "size_mib=2"),
                WarmUpTieringRounds = p.GetValue(warmUpRounds) is int rounds and >= 0 and <= 20 ? rounds : throw new CliException($"--warm-up-rounds must be between 0 and 20, not {p.GetValue(warmUpRounds)}"),
                WarmUpLinux = p.GetValue(noWarmUp) ? null : GuestCatalog.ResolveLinux(null, null, null, null, "workload=idle"),
                FaultSocketPriority = p.GetValue(faultPriority),
                HandshakeTimeout = Common.ParseDuration(p.GetValue(handshake)!),
                MaxPendingConnections = Common.Positive(p.GetValue(maxPending), "--max-pending-connections"),
                MaxIncomingVms = Common.Positive(p.GetValue(maxIncoming), "--max-incoming"),
                MaxIncomingMemoryBytes = Common.ParseSize(p.GetValue(maxIncomingMemory)!, "--max-incoming-memory"),
                MaxRequestBytes = (long)Common.ParseSize(p.GetValue(maxRequest)!, "--max-request-size"),
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

    /// <summary>
    /// The API's URL: loopback unless --api names an address (as ADDR:PORT, or a URL whose
    /// scheme is then set by TLS), so that opening the data port to the network never opens the
    /// API with it.
    /// </summary>
    private static string ApiUrl(string? api, IPEndPoint data, bool tls)
    {
        string scheme = tls ? "https" : "http";
        if (api is null)
        {
            return $"{scheme}://127.0.0.1:{(data.Port == 0 ? 0 : data.Port + 1)}";
        }

        string text = api.Contains("://", StringComparison.Ordinal) ? api[(api.IndexOf("://", StringComparison.Ordinal) + 3)..].TrimEnd('/') : api;
        if (IPEndPoint.TryParse(text, out IPEndPoint? endpoint) && text.Contains(':', StringComparison.Ordinal))
        {
            return $"{scheme}://{Format(endpoint.Address)}:{endpoint.Port}";
        }

        int colon = text.LastIndexOf(':');
        if (colon > 0 && text[..colon] == "localhost" && int.TryParse(text.AsSpan(colon + 1), out int port) && port is >= 0 and <= 65535)
        {
            return $"{scheme}://localhost:{port}";
        }

        throw new CliException($"--api '{api}' is not ADDR:PORT (example: 127.0.0.1:7701)");
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

    public static CredentialOptions SecretOption() => new();

    public static Option<bool> JsonOption() => new("--json") { Description = "print JSON" };

    /// <summary>
    /// `--strategy`: every strategy the migration knows (<see cref="StrategyPolicy.All"/>), its
    /// help from each policy's description, its completions their names, and an unknown name a
    /// one-line parse error listing them.
    /// </summary>
    public static Option<StrategyKind> StrategyOption(StrategyKind defaultKind)
    {
        var option = new Option<StrategyKind>("--strategy")
        {
            Description = string.Join("; ", StrategyPolicy.All.Select(k => $"{StrategyPolicy.NameOf(k)}: {StrategyPolicy.For(k).Description}"))
                + $" (default: {StrategyPolicy.NameOf(defaultKind)})",
            DefaultValueFactory = _ => defaultKind,
            CustomParser = result =>
            {
                try
                {
                    return StrategyPolicy.Parse(result.Tokens[^1].Value);
                }
                catch (ArgumentException e)
                {
                    result.AddError(e.Message);
                    return defaultKind;
                }
            },
        };
        option.CompletionSources.Add([.. StrategyPolicy.Names]);
        return option;
    }

    public static ApiCredentials Secret(ParseResult p, CredentialOptions options) => options.Resolve(p);

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

        // Finite, positive and at most a day: "Infinity", "NaN" or 1e300 are not durations.
        if (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v)
            || !double.IsFinite(v) || v <= 0 || v * unit > TimeSpan.FromDays(1).TotalMilliseconds)
        {
            throw new CliException($"'{text}' is not a duration between 0 and 24 hours (examples: 300ms, 2s)");
        }

        return TimeSpan.FromMilliseconds(v * unit);
    }

    public static int Positive(int value, string option)
        => value > 0 ? value : throw new CliException($"{option} must be a positive number, not {value}");

    /// <summary>A size such as 256M or 4G (MachineConfig's syntax), as a one-line error when it is not one.</summary>
    public static ulong ParseSize(string text, string option)
    {
        try
        {
            ulong size = Ferry.Machine.Board.MachineConfig.ParseSize(text);
            return size > 0 ? size : throw new CliException($"{option} must be larger than 0");
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            throw new CliException($"{option}: '{text}' is not a size (examples: 512M, 4G)");
        }
    }
}
