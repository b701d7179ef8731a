using System.Net.Http.Json;
using Ferry.Host;

namespace Ferry.EndToEnd.Tests;

/// <summary>Direct calls to a host's control API, for what the tests check or provoke.</summary>
internal static class Api
{
    private static readonly HttpClient Plain = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>The client for https:// hosts (it presents the tests' client certificate), set by the TLS fixture.</summary>
    public static HttpClient? Tls { get; set; }

    private static HttpClient Client(string host) => host.StartsWith("https:", StringComparison.Ordinal)
        ? Tls ?? throw new InvalidOperationException("no TLS client set up")
        : Plain;

    public static async Task<VmStatus> StatusAsync(string host, string name)
        => (await Client(host).GetFromJsonAsync<VmStatus>($"{host}/v1/vms/{name}", ApiJson.Options))!;

    public static async Task<VmStatus?> TryStatusAsync(string host, string name)
    {
        using HttpResponseMessage r = await Client(host).GetAsync($"{host}/v1/vms/{name}");
        return r.IsSuccessStatusCode ? await r.Content.ReadFromJsonAsync<VmStatus>(ApiJson.Options) : null;
    }

    public static async Task<byte[]> ConsoleAsync(string host, string name, long from)
        => await Client(host).GetByteArrayAsync($"{host}/v1/vms/{name}/console?from={from}");

    public static async Task<HttpResponseMessage> PostAsync(string host, string path, object body)
        => await Client(host).PostAsync($"{host}{path}", JsonContent.Create(body, body.GetType(), options: ApiJson.Options));

    public static async Task<MigrationStatus> MigrationAsync(string host, string id)
        => (await Client(host).GetFromJsonAsync<MigrationStatus>($"{host}/v1/migrations/{id}", ApiJson.Options))!;

    public static async Task<MigrationStatus> WaitMigrationAsync(string host, string id, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            MigrationStatus s = await MigrationAsync(host, id);
            if (s.Done)
            {
                return s;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"migration {id} still {s.Phase} after {timeout}" + (s.Detail is null ? "" : $": {s.Detail}") + $" (recoveries {s.Recoveries}, peer silent {s.PeerSilentMs:0} ms, round {s.Round}, {s.PagesRemaining} of {s.PagesTotal} pages left)");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Polls until the VM satisfies <paramref name="done"/>.</summary>
    public static async Task<VmStatus> WaitAsync(string host, string name, Func<VmStatus, bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            VmStatus s = await StatusAsync(host, name);
            if (done(s))
            {
                return s;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"VM {name} on {host} is {s.State} at {s.InstructionsRetired} instructions after {timeout}");
            }

            await Task.Delay(50);
        }
    }
}
