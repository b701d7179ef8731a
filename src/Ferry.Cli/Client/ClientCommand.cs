using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Ferry.Cli.Bench;

namespace Ferry.Cli.Client;

/// <summary>`ferry client`: the kvserver guest's load generator (see <see cref="KvClient"/>).</summary>
internal static class ClientCommand
{
    public static Command Create()
    {
        var target = new Option<string>("--target") { Description = "the kvserver's ADDR:PORT (the Linux guest's: 10.77.0.2:7000)", Required = true };
        var rate = new Option<double>("--rate") { Description = "requests per second over all connections, sent on schedule whatever the replies do (open loop)", DefaultValueFactory = _ => 1000 };
        var connections = new Option<int>("--connections") { Description = "TCP connections (never reopened: a broken one fails its requests)", DefaultValueFactory = _ => 4 };
        var duration = new Option<string>("--duration") { Description = "how long to send (e.g. 10s)", DefaultValueFactory = _ => "10s" };
        var samples = new Option<string?>("--samples") { Description = "write every request to this file: CSV, or JSON when it ends in .json" };
        var json = Common.JsonOption();
        var cmd = new Command("client", "Send GET/PUT requests to a kvserver guest at a steady rate and report latency, failures and the longest gap without a reply; exits 1 if a request failed")
        {
            target, rate, connections, duration, samples, json,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            var options = new KvClientOptions(ParseTarget(p.GetValue(target)!), p.GetValue(rate), p.GetValue(connections), Common.ParseDuration(p.GetValue(duration)!));
            KvClientResult result = await KvClient.RunAsync(options, ct);
            if (p.GetValue(samples) is { } file)
            {
                await File.WriteAllTextAsync(file, file.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                    ? JsonSerializer.Serialize(result.Summary(withSamples: true), BenchResults.Json)
                    : result.SamplesCsv(), CancellationToken.None);
            }

            if (p.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(result.Summary(withSamples: false), BenchResults.Json));
            }
            else
            {
                Console.Out.WriteLine(Describe(result));
            }

            return result.Failed == 0 ? 0 : 1;
        }));
        return cmd;
    }

    /// <summary>ADDR:PORT, an IP address (a name would hide which address was measured).</summary>
    internal static IPEndPoint ParseTarget(string text)
    {
        if (!IPEndPoint.TryParse(text, out IPEndPoint? endpoint) || endpoint.Port == 0)
        {
            throw new CliException($"--target: '{text}' is not ADDR:PORT (example: 10.77.0.2:7000)");
        }

        return endpoint;
    }

    internal static string Describe(KvClientResult r)
    {
        var c = CultureInfo.InvariantCulture;
        LatencyPercentiles? l = r.Latency;
        ReplyGap gap = r.LongestGap;
        string latency = l is null ? "no reply" : string.Format(c, "latency p50 {0:0.###} ms, p99 {1:0.###} ms", l.P50, l.P99);
        string failed = r.Failed == 0 ? "0 failed" : string.Format(c, "{0} failed (first: {1})", r.Failed, r.FirstError);
        return string.Format(c, "{0} requests to {1} over {2} connection(s): {3}; {4}; longest gap without a reply {5:0.###} ms (from {6:0.###} ms); broken connections {7}; max send lateness {8:0.###} ms",
            r.Samples.Count, r.Options.Target, r.Options.Connections, latency, failed, gap.Ms, gap.FromMs, r.BrokenConnections, r.MaxLatenessMs);
    }
}
