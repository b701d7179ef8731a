using System.Text;
using System.Text.Json;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Ferry.Migration.Tests;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Two host agents with TLS everywhere (HTTPS API and migration connections, mutual
/// certificate authentication against a CA made for the run) and a shared secret read from a
/// file, plus a host without TLS; the CLI presents its own client certificate.
/// </summary>
public sealed class TlsHosts : IAsyncLifetime
{
    private readonly TestPki _pki = new();
    private readonly TestPki _rogue = new("rogue CA");

    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("ferry-tls-").FullName;

    internal HostProcess A { get; private set; } = null!;

    internal HostProcess B { get; private set; } = null!;

    internal HostProcess Plain { get; private set; } = null!;

    /// <summary>The CLI's credentials: its certificate of the CA, and the secret file.</summary>
    public string[] Client { get; private set; } = [];

    /// <summary>A client certificate of another CA (that trusts the right CA).</summary>
    public string[] RogueClient { get; private set; } = [];

    /// <summary>A client certificate of the CA that trusts another CA only.</summary>
    public string[] WrongCa { get; private set; } = [];

    public async Task InitializeAsync()
    {
        string secret = Path.Combine(Directory, "secret");
        await File.WriteAllTextAsync(secret, "tls-s3cret\n");
        (string aCert, string aKey, string ca) = _pki.WritePem(Directory, "host-a");
        (string bCert, string bKey, _) = _pki.WritePem(Directory, "host-b");
        (string cCert, string cKey, _) = _pki.WritePem(Directory, "cli");
        string rogueDirectory = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "rogue")).FullName;
        (string rCert, string rKey, string rogueCa) = _rogue.WritePem(rogueDirectory, "rogue");
        Client = ["--tls-cert", cCert, "--tls-key", cKey, "--tls-ca", ca, "--secret-file", secret];
        RogueClient = ["--tls-cert", rCert, "--tls-key", rKey, "--tls-ca", ca, "--secret-file", secret];
        WrongCa = ["--tls-cert", cCert, "--tls-key", cKey, "--tls-ca", rogueCa, "--secret-file", secret];
        Task<HostProcess> a = HostProcess.StartAsync("TA", null, "--tls-cert", aCert, "--tls-key", aKey, "--tls-ca", ca, "--secret-file", secret);
        Task<HostProcess> b = HostProcess.StartAsync("TB", null, "--tls-cert", bCert, "--tls-key", bKey, "--tls-ca", ca, "--secret-file", secret);
        Task<HostProcess> plain = HostProcess.StartAsync("TP", null, "--secret-file", secret);
        A = await a;
        B = await b;
        Plain = await plain;

        // The tests' own API calls present the CLI's certificate and the secret.
        var handler = new SocketsHttpHandler { SslOptions = TlsSettings.Load(cCert, cKey, ca).ClientOptions("127.0.0.1", _ => { }) };
        Api.Tls = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        Api.Tls.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "tls-s3cret");
    }

    public async Task DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        await Plain.DisposeAsync();
        Api.Tls?.Dispose();
        _pki.Dispose();
        _rogue.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}

[CollectionDefinition("tls")]
public sealed class TlsCollection : ICollectionFixture<TlsHosts>;

[Collection("tls")]
public sealed class TlsEndToEndTests(TlsHosts hosts)
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(3);

    [Theory]
    [InlineData("precopy")]
    [InlineData("postcopy")]
    [InlineData("hybrid")]
    public async Task A_migration_over_tls_reaches_the_unmigrated_digest(string strategy)
    {
        const ulong stopAt = 12_000_000_000; // long enough that the translator (verify at up to 3,500 MIPS) still runs it when the migration pauses it
        const string config = "size_mib=8";
        Assert.StartsWith("https://", hosts.A.Api);
        (int exit, byte[] reference, string stderr) = await Ferry.RunAsync(Long, "run", "verify", "--memory", "64M", "--icount", "--no-idle-sleep",
            "--max-instructions", stopAt.ToString(), "--config", config, "--digest");
        Assert.True(exit == 0, stderr);
        string text = Encoding.ASCII.GetString(reference);
        string digest = text[(text.LastIndexOf("digest: ", StringComparison.Ordinal) + 8)..].Trim();

        string name = $"tls-{strategy}";
        string reportFile = Path.Combine(hosts.Directory, name + ".json");
        (exit, _, stderr) = await Ferry.RunTextAsync(Long, ["vm", "start", "verify", "--host", hosts.A.Api, "--name", name,
            "--memory", "64M", "--icount", "--stop-at", stopAt.ToString(), "--config", config, .. hosts.Client]);
        Assert.True(exit == 0, stderr);
        await Api.WaitAsync(hosts.A.Api, name, s => s.InstructionsRetired >= stopAt / 40 || s.State != VmState.Running, Long);
        (exit, _, stderr) = await Ferry.RunTextAsync(Long, ["migrate", name, "--from", hosts.A.Api, "--to", hosts.B.Api,
            "--strategy", strategy, "--quiet", "--json", reportFile, "--downtime-limit", "20ms", "--max-rounds", "8", .. hosts.Client]);
        Assert.True(exit == 0, $"migrate failed: {stderr}\nA: {hosts.A.Log}\nB: {hosts.B.Log}");
        MigrationReport report = JsonSerializer.Deserialize<MigrationReport>(await File.ReadAllTextAsync(reportFile), MigrationReport.Json)!;
        Assert.Equal(MigrationOutcome.Completed, report.Outcome);
        Assert.True(report.Guest.InstructionsAtPause < stopAt, "it was migrated while it ran");

        VmStatus atB = await Api.WaitAsync(hosts.B.Api, name, s => s.State != VmState.Running && s.State != VmState.Incoming && s.Digest is not null, Long);
        Assert.Equal(stopAt, atB.InstructionsRetired);
        Assert.Equal(digest, atB.Digest);
        Assert.Equal(VmState.Migrated, (await Api.StatusAsync(hosts.A.Api, name)).State);
    }

    [Theory]
    [InlineData("no client certificate", "no client certificate given", null)]
    [InlineData("client certificate of another CA", "does it trust this client's certificate?", "not issued by the trusted CA")]
    [InlineData("host certificate not of the trusted CA", "not issued by the trusted CA", null)]
    [InlineData("plain http to the TLS API", "is it a TLS host", null)]
    public async Task The_api_refuses_a_client_without_the_right_certificate_in_one_line(string setup, string expected, string? logged)
    {
        string[] args = setup switch
        {
            "no client certificate" => ["vm", "list", "--host", hosts.A.Api, "--secret-file", Path.Combine(hosts.Directory, "secret")],
            "client certificate of another CA" => ["vm", "list", "--host", hosts.A.Api, .. hosts.RogueClient],
            "host certificate not of the trusted CA" => ["vm", "list", "--host", hosts.A.Api, .. hosts.WrongCa],
            _ => ["vm", "list", "--host", hosts.A.Api.Replace("https://", "http://", StringComparison.Ordinal), .. hosts.Client],
        };
        (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(Long, args);
        Assert.Equal(125, exit);
        Assert.Empty(stdout);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.Trim().Split('\n'));
        if (logged is not null)
        {
            // The host logs the reason.
            await HostSecurityTests.WaitForAsync(() => hosts.A.Log.Contains("refused an API connection: ", StringComparison.Ordinal)
                && hosts.A.Log.Contains(logged, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task An_api_client_that_presents_no_certificate_gets_a_json_error_and_the_host_logs_the_peer()
    {
        // A client that trusts the host but has no certificate of its own (the CLI refuses to be
        // one, so a plain HttpClient): the handshake completes, the request is refused.
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true };
        using var client = new HttpClient(handler);
        using HttpResponseMessage response = await client.GetAsync($"{hosts.A.Api}/v1/vms");
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("no client certificate given", await response.Content.ReadAsStringAsync());
        await HostSecurityTests.WaitForAsync(() => hosts.A.Log.Contains("refused an API connection: no client certificate given by ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_plain_source_is_refused_by_a_tls_destination_and_keeps_the_vm()
    {
        const string name = "plain-to-tls";
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Long, ["vm", "start", "idle", "--host", hosts.Plain.Api, "--name", name,
            "--memory", "16M", "--config", "interval_ms=2", .. hosts.Client]);
        Assert.True(exit == 0, stderr);
        (exit, string summary, stderr) = await Ferry.RunTextAsync(Long, ["migrate", name, "--from", hosts.Plain.Api, "--to", hosts.B.Api, "--quiet", .. hosts.Client]);
        Assert.True(exit == 1, stderr);
        Assert.Contains("accepts only TLS", summary);
        (exit, string status, stderr) = await Ferry.RunTextAsync(Long, ["vm", "status", name, "--host", hosts.Plain.Api, "--json", .. hosts.Client]);
        Assert.True(exit == 0, stderr);
        Assert.Equal(VmState.Running, JsonSerializer.Deserialize<VmStatus>(status, ApiJson.Options)!.State);
        await HostSecurityTests.WaitForAsync(() => hosts.B.Log.Contains("plain connection to the TLS endpoint", StringComparison.Ordinal));
    }
}

/// <summary>How `ferry host` takes its secret and where it opens its API.</summary>
public sealed class HostSecurityTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    [Theory]
    [InlineData("--secret", "")]
    [InlineData("--secret-file", "empty")]
    public async Task An_empty_secret_is_refused_in_one_line(string option, string value)
    {
        string file = Path.GetTempFileName();
        try
        {
            foreach (string command in new[] { "host", "vm" })
            {
                string[] args = command == "host"
                    ? ["host", "--listen", "127.0.0.1:0", option, value == "empty" ? file : value]
                    : ["vm", "list", option, value == "empty" ? file : value];
                (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(Timeout, args);
                Assert.Equal(125, exit);
                Assert.DoesNotContain("ferry host: api", stdout);
                Assert.Contains("empty", stderr);
                Assert.Single(stderr.Trim().Split('\n'));
            }
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task The_api_stays_on_loopback_unless_api_says_otherwise_and_then_warns()
    {
        await using (HostProcess open = await HostProcess.StartAsync("L", null, "--listen", "0.0.0.0:0"))
        {
            Assert.StartsWith("http://127.0.0.1:", open.Api);
            Assert.StartsWith("0.0.0.0:", open.Data);
            Assert.DoesNotContain("not on loopback", open.Log);
        }

        await using HostProcess exposed = await HostProcess.StartAsync("W", null, "--api", "0.0.0.0:0");
        Assert.StartsWith("http://0.0.0.0:", exposed.Api);
        await WaitForAsync(() => exposed.Log.Contains("not on loopback", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_secret_read_from_a_file_guards_the_api()
    {
        string file = Path.GetTempFileName();
        await File.WriteAllTextAsync(file, "from-a-file\n");
        try
        {
            await using HostProcess host = await HostProcess.StartAsync("F", null, "--secret-file", file);
            (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "list", "--host", host.Api);
            Assert.Equal(125, exit);
            Assert.Contains("wrong or missing secret", stderr);
            (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "vm", "list", "--host", host.Api, "--secret-file", file);
            Assert.True(exit == 0, stderr);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Waits up to 10 s for a host's log (written asynchronously) to say something.</summary>
    internal static async Task WaitForAsync(Func<bool> condition)
    {
        for (int i = 0; i < 100 && !condition(); i++)
        {
            await Task.Delay(100);
        }

        Assert.True(condition(), "timed out");
    }
}
