using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using CsCheck;
using Ferry.Host;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Random sequences of control API calls, with valid, mutated and hostile bodies, against an
/// in-process host agent: the host never answers 500, every error is JSON with a message, every
/// call returns within a bound, and the process survives (a use after free would end it).
/// </summary>
public sealed class ApiFuzzTests : IAsyncLifetime
{
    private static readonly string Image = Convert.ToBase64String(File.ReadAllBytes(Path.Combine(Ferry.RepoRoot, "guests", "bin", "idle.elf")));
    private HostAgent _host = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _host = new HostAgent(new HostOptions
        {
            DataEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            ApiUrl = "http://127.0.0.1:0",
            Name = "fuzz",
            MaxMemoryBytes = 64UL << 20,
            MaxIncomingVms = 3,
            MaxIncomingMemoryBytes = 96UL << 20,
            HandshakeTimeout = TimeSpan.FromSeconds(1),
        });
        await _host.StartAsync();
        _http = new HttpClient { BaseAddress = new Uri(_host.ApiUrl), Timeout = TimeSpan.FromSeconds(30) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _host.DisposeAsync();
    }

    private static readonly string[] Names = ["a", "b", "vm-1", "../evil name", "", "x.y_z", new string('n', 70), "nul\u0000l"];

    private static readonly string[] Values =
    [
        "0", "1", "-1", "4096", "33554432", "67108864", "1e400", "\"Infinity\"", "\"NaN\"", "\"-Infinity\"", "null", "true", "\"\"",
        "\"hybrid\"", "\"precopy\"", "\"postcopy\"", "\"teleport\"", "\"1Gbit\"", "\"0\"", "\"-5M\"", "18446744073709551615", "[]", "{}",
        "\"127.0.0.1:9\"", "\"nowhere\"", "\"" + new string('0', 64) + "\"", "\"zz\"", "\"linear\"",
    ];

    private static readonly string[] Fields =
    [
        "name", "image", "memoryBytes", "icount", "stopAt", "idleSleep", "linux", "destination", "token", "strategy", "bandwidth",
        "downtimeLimitMs", "maxRounds", "maxLiveTimeMs", "localityPages", "workingSetMaxBytes", "workingSetMaxPauseMs", "livePasses", "pushOrder",
    ];

    /// <summary>A body: a JSON object of random fields (sometimes the VM image), or bytes that are not JSON at all.</summary>
    private static readonly Gen<string?> Body = Gen.Frequency(
        (6, Gen.Select(Gen.Int[0, Fields.Length - 1].Array[0, 3], Gen.Int[0, Values.Length - 1].Array[3], Gen.Int[0, Names.Length - 1], Gen.Int[0, 2])
            .Select((fields, values, name, image) =>
            {
                var json = new StringBuilder("{");
                json.Append("\"name\":").Append(JsonSerializer.Serialize(Names[name]));
                json.Append(",\"memoryBytes\":").Append(image == 2 ? "33554432" : "4096");
                if (image > 0)
                {
                    json.Append(",\"image\":\"").Append(Image).Append('"');
                }

                for (int i = 0; i < fields.Length; i++)
                {
                    json.Append(",\"").Append(Fields[fields[i]]).Append("\":").Append(Values[values[i]]);
                }

                return (string?)json.Append('}').ToString();
            })),
        (1, Gen.String.Select(s => (string?)s)),
        (1, Gen.Const((string?)null)),
        (1, Gen.Const((string?)"{\"name\": \"a\", ")));

    private sealed record Call(string Method, string Path, string? Body);

    /// <summary>
    /// A route: each of the twelve, and a second draw of create, stop and incoming (12, 13, 14),
    /// so that a VM created is more often stopped than deleted before anything stops it (the
    /// coverage the test asserts: at equal odds a run of 2026-11-28 stopped none).
    /// </summary>
    private static readonly Gen<int> Route = Gen.Int[0, 14].Select(r => r switch { 12 => 0, 13 => 2, 14 => 5, _ => r });

    private static readonly Gen<Call> Calls = Gen.Select(Route, Gen.Int[0, Names.Length - 1], Body).Select((route, name, body) =>
    {
        // A NUL in the request line is refused by Kestrel itself, before any of the host's code runs.
        string n = Uri.EscapeDataString(Names[name].Replace("\u0000", "", StringComparison.Ordinal));
        return route switch
        {
            0 => new Call("POST", "/v1/vms", body),
            1 => new Call("GET", $"/v1/vms/{n}", null),
            2 => new Call("POST", $"/v1/vms/{n}/stop", null),
            3 => new Call("POST", $"/v1/vms/{n}/resume", null),
            4 => new Call("DELETE", $"/v1/vms/{n}", null),
            5 => new Call("POST", "/v1/incoming", body),
            6 => new Call("POST", $"/v1/vms/{n}/migrate", body),
            7 => new Call("GET", $"/v1/migrations/m{name}-{n}", null),
            8 => new Call("POST", $"/v1/migrations/m{name}-{n}/cancel", null),
            9 => new Call("GET", $"/v1/vms/{n}/console?from={name - 3}", null),
            10 => new Call("GET", "/v1/vms", null),
            _ => new Call("PUT", $"/v1/{n}", body),
        };
    });

    [Fact]
    public async Task Random_call_sequences_never_get_a_500_and_every_error_is_json()
    {
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        await Calls.Array[1, 12].SampleAsync(async calls =>
        {
            foreach (Call call in calls)
            {
                using var request = new HttpRequestMessage(new HttpMethod(call.Method), call.Path);
                if (call.Body is not null)
                {
                    request.Content = new StringContent(call.Body, Encoding.UTF8, "application/json");
                }

                var watch = Stopwatch.StartNew();
                using HttpResponseMessage response = await _http.SendAsync(request);
                string text = await response.Content.ReadAsStringAsync();
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"{call} took {watch.Elapsed}"); // a hang, not a speed check
                Assert.True((int)response.StatusCode < 500, $"{call} -> {(int)response.StatusCode} {text}");
                seen.AddOrUpdate($"{call.Method} {call.Path.Split('/')[2]}{(call.Path.Split('/').Length > 4 ? "/" + call.Path.Split('/')[4].Split('?')[0] : "")} {(int)response.StatusCode}", 1, (_, c) => c + 1);
                if (!response.IsSuccessStatusCode)
                {
                    ErrorResponse? error = JsonSerializer.Deserialize<ErrorResponse>(text, ApiJson.Options);
                    Assert.False(string.IsNullOrWhiteSpace(error?.Error), $"{call} -> {(int)response.StatusCode} without a message: {text}");
                }
            }

            using HttpResponseMessage alive = await _http.GetAsync("/v1/host");
            Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
        }, iter: 300, threads: 1);

        // The calls reached the host's own code: VMs were started, stopped and removed, and refused.
        Console.WriteLine(string.Join(", ", seen.OrderBy(p => p.Key).Select(p => $"{p.Key}: {p.Value}")));
        Assert.Contains(seen.Keys, k => k == "POST vms 200");
        Assert.Contains(seen.Keys, k => k.StartsWith("POST vms/stop 200", StringComparison.Ordinal));
        Assert.Contains(seen.Keys, k => k.StartsWith("POST incoming 200", StringComparison.Ordinal));
    }
}
