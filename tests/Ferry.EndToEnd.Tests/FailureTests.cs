using System.Buffers.Binary;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Bad input and failure: each gives a clear one-line error and a non-zero exit, and the VM
/// keeps running at the source, untouched, and never runs at the destination.
/// </summary>
[Collection("hosts")]
public sealed class FailureTests(TwoHosts hosts)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private async Task<string> StartAsync(string name, string guest = "idle", string config = "interval_ms=5")
    {
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "start", guest, "--host", hosts.A.Api, "--name", name, "--memory", "32M", "--config", config);
        Assert.True(exit == 0, stderr);
        return name;
    }

    /// <summary>The VM still runs at A (its instruction count moves) and does not exist at B.</summary>
    private async Task AssertStillAtSourceAsync(string name)
    {
        VmStatus before = await Api.StatusAsync(hosts.A.Api, name);
        Assert.Equal(VmState.Running, before.State);
        await Api.WaitAsync(hosts.A.Api, name, s => s.InstructionsRetired > before.InstructionsRetired, Timeout);
        Assert.Null(await Api.TryStatusAsync(hosts.B.Api, name));
    }

    /// <summary>Exit 125 and one line on stderr, "ferry: " and the cause, with no stack trace and no .NET type name.</summary>
    internal static void AssertOneLineError(int exit, string stderr, string expected)
    {
        Assert.Equal(125, exit);
        string line = stderr.Trim();
        Assert.DoesNotContain('\n', line);
        Assert.StartsWith("ferry: ", line);
        Assert.Contains(expected, line, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("System.", line);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public async Task Unknown_vm_is_a_clear_error()
    {
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "migrate", "no-such-vm", "--from", hosts.A.Api, "--to", hosts.B.Api, "--quiet");
        AssertOneLineError(exit, stderr, "no VM named 'no-such-vm'");
    }

    [Fact]
    public async Task Unreachable_destination_host_leaves_the_vm_running()
    {
        string name = await StartAsync("unreachable-api");
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "migrate", name, "--from", hosts.A.Api, "--to", "http://127.0.0.1:9", "--quiet");
        AssertOneLineError(exit, stderr, "unreachable");
        await AssertStillAtSourceAsync(name);
    }

    [Fact]
    public async Task Unreachable_destination_data_port_fails_the_migration_and_leaves_the_vm_running()
    {
        string name = await StartAsync("unreachable-data");
        MigrationStatus done = await MigrateViaApiAsync(name, "127.0.0.1:9", Convert.ToHexString(new byte[Hello.TokenLength]));
        Assert.Equal("failed", done.Phase);
        Assert.Equal(VmLocation.Source, done.Report!.VmLocation);
        Assert.Contains("unreachable", done.Report.Error, StringComparison.OrdinalIgnoreCase);
        await AssertStillAtSourceAsync(name);
    }

    [Fact]
    public async Task Destination_refuses_a_wrong_token_and_the_vm_keeps_running()
    {
        string name = await StartAsync("wrong-token");
        MigrationStatus done = await MigrateViaApiAsync(name, hosts.B.Data, Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(Hello.TokenLength)));
        Assert.Equal("failed", done.Phase);
        Assert.Contains("token", done.Report!.Error, StringComparison.OrdinalIgnoreCase);
        await AssertStillAtSourceAsync(name);
    }

    [Fact]
    public async Task Memory_size_mismatch_is_refused_and_the_vm_keeps_running()
    {
        string name = await StartAsync("size-mismatch");
        using HttpResponseMessage prepared = await Api.PostAsync(hosts.B.Api, "/v1/incoming", new IncomingRequest { Name = name, MemoryBytes = 64UL << 20 });
        prepared.EnsureSuccessStatusCode();
        IncomingResponse slot = (await prepared.Content.ReadFromJsonAsync<IncomingResponse>(ApiJson.Options))!;
        MigrationStatus done = await MigrateViaApiAsync(name, slot.DataEndpoint, slot.Token);
        Assert.Equal("failed", done.Phase);
        Assert.Contains("memory size mismatch", done.Report!.Error);
        await AssertStillAtSourceAsync(name);
    }

    [Fact]
    public async Task Name_taken_at_the_destination_is_refused_and_the_vm_keeps_running()
    {
        string name = await StartAsync("taken");
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "start", "hello", "--host", hosts.B.Api, "--name", name, "--memory", "32M");
        Assert.True(exit == 0, stderr);
        (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "migrate", name, "--from", hosts.A.Api, "--to", hosts.B.Api, "--quiet");
        AssertOneLineError(exit, stderr, "already exists");
        VmStatus atA = await Api.StatusAsync(hosts.A.Api, name);
        Assert.Equal(VmState.Running, atA.State);
        VmStatus atB = await Api.StatusAsync(hosts.B.Api, name);
        Assert.Equal(VmState.Exited, atB.State); // the other VM of that name, untouched
    }

    [Fact]
    public async Task Wrong_protocol_version_is_refused_with_a_clear_reason()
    {
        // A source from the future connects to B's data port.
        string[] endpoint = hosts.B.Data.Split(':');
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint[0], int.Parse(endpoint[1]));
        NetworkStream stream = client.GetStream();
        byte[] hello = new Hello
        {
            Role = ConnectionRole.Main,
            Token = new byte[Hello.TokenLength],
            VmName = "future",
            Machine = new Machine.Board.MachineConfig(),
            Strategy = StrategyKind.Hybrid,
        }.Encode();
        BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(8), Hello.ProtocolVersion + 1); // a version from the future
        byte[] frame = new byte[8 + hello.Length];
        frame[0] = (byte)MessageType.Hello;
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(4), hello.Length);
        hello.CopyTo(frame, 8);
        await stream.WriteAsync(frame);

        byte[] header = new byte[8];
        await stream.ReadExactlyAsync(header);
        Assert.Equal((byte)MessageType.Refused, header[0]);
        byte[] payload = new byte[BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4))];
        await stream.ReadExactlyAsync(payload);
        Assert.Contains($"protocol version {Hello.ProtocolVersion + 1} is not supported", HelloReply.Decode(payload).Message);
        Assert.Null(await Api.TryStatusAsync(hosts.B.Api, "future"));
    }

    [Fact]
    public async Task Cancel_before_switchover_leaves_the_vm_running_at_the_source()
    {
        string name = await StartAsync("cancelled", "dirty", "size_mib=8,rate=0");
        using HttpResponseMessage prepared = await Api.PostAsync(hosts.B.Api, "/v1/incoming", new IncomingRequest { Name = name, MemoryBytes = 32UL << 20 });
        IncomingResponse slot = (await prepared.Content.ReadFromJsonAsync<IncomingResponse>(ApiJson.Options))!;
        // Pre-copy of a fast-dirtying guest over a slow link: it stays in its live phase.
        using HttpResponseMessage started = await Api.PostAsync(hosts.A.Api, $"/v1/vms/{name}/migrate", new MigrateRequest
        {
            Destination = slot.DataEndpoint,
            Token = slot.Token,
            Strategy = "precopy",
            Bandwidth = "20Mbit",
            DowntimeLimitMs = 1,
        });
        started.EnsureSuccessStatusCode();
        string id = (await started.Content.ReadFromJsonAsync<MigrateResponse>(ApiJson.Options))!.Id;
        await Task.Delay(500);
        using HttpResponseMessage cancel = await Api.PostAsync(hosts.A.Api, $"/v1/migrations/{id}/cancel", new { });
        cancel.EnsureSuccessStatusCode();
        MigrationStatus done = await Api.WaitMigrationAsync(hosts.A.Api, id, Timeout);
        Assert.Equal("cancelled", done.Phase);
        Assert.Equal(VmLocation.Source, done.Report!.VmLocation);
        await AssertStillAtSourceAsync(name);
    }

    [Fact]
    public async Task Ctrl_c_on_ferry_migrate_cancels_the_migration_and_the_vm_keeps_running()
    {
        string name = await StartAsync("interrupted", "dirty", "size_mib=8,rate=0");
        System.Diagnostics.ProcessStartInfo psi = Ferry.StartInfo("migrate", name, "--from", hosts.A.Api, "--to", hosts.B.Api,
            "--strategy", "precopy", "--bandwidth", "20Mbit", "--downtime-limit", "1ms", "--quiet");
        // SIGINT as a terminal delivers it: a test run started in the background of a
        // non-interactive shell inherits SIGINT ignored, and .NET (like any program) keeps it so.
        psi.ArgumentList.Insert(0, psi.FileName);
        psi.ArgumentList.Insert(0, "--default-signal=INT");
        psi.FileName = "env";
        using var process = System.Diagnostics.Process.Start(psi)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        await Api.WaitAsync(hosts.A.Api, name, s => s.Migration is not null, Timeout);
        await Task.Delay(500);

        // SIGINT, as Ctrl-C in a terminal.
        using (var kill = System.Diagnostics.Process.Start("kill", ["-INT", process.Id.ToString()])!)
        {
            await kill.WaitForExitAsync();
        }

        await process.WaitForExitAsync().WaitAsync(Timeout);
        Assert.True(process.ExitCode == 2, $"exit {process.ExitCode}: {await stderr} {await stdout}");
        Assert.Contains("cancelled", await stdout);
        await AssertStillAtSourceAsync(name);
    }

    [Fact]
    public async Task Vm_status_json_has_the_documented_fields_and_a_digest_once_stopped()
    {
        (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "start", "compute", "--host", hosts.A.Api, "--name", "status-json",
            "--memory", "32M", "--icount", "--stop-at", "1000000", "--config", "iterations=1000000");
        Assert.True(exit == 0, stderr);
        await Api.WaitAsync(hosts.A.Api, "status-json", s => s.State == VmState.Paused, Timeout);
        (exit, stdout, stderr) = await Ferry.RunTextAsync(Timeout, "vm", "status", "status-json", "--host", hosts.A.Api, "--json");
        Assert.True(exit == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal("status-json", root.GetProperty("name").GetString());
        Assert.Equal("paused", root.GetProperty("state").GetString());
        Assert.Equal(1_000_000UL, root.GetProperty("instructionsRetired").GetUInt64());
        Assert.Matches("^[0-9a-f]{32}$", root.GetProperty("digest").GetString());
    }

    private async Task<MigrationStatus> MigrateViaApiAsync(string name, string destination, string token)
    {
        using HttpResponseMessage started = await Api.PostAsync(hosts.A.Api, $"/v1/vms/{name}/migrate", new MigrateRequest { Destination = destination, Token = token, Strategy = "hybrid" });
        Assert.True(started.IsSuccessStatusCode, await started.Content.ReadAsStringAsync());
        string id = (await started.Content.ReadFromJsonAsync<MigrateResponse>(ApiJson.Options))!.Id;
        return await Api.WaitMigrationAsync(hosts.A.Api, id, Timeout);
    }
}

/// <summary>Inputs refused by `ferry` itself, and the shared secret.</summary>
public sealed class CommandLineTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    [Theory]
    [InlineData("not-an-elf", "not an ELF file")]
    [InlineData("elf32", "not a 64-bit little-endian ELF")]
    [InlineData("missing", "no such file")]
    public async Task Run_refuses_a_bad_image_with_one_line(string kind, string expected)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-bad-{kind}-{Environment.ProcessId}.elf");
        if (kind == "not-an-elf")
        {
            await File.WriteAllTextAsync(path, "#!/bin/sh\necho hello\n");
        }
        else if (kind == "elf32")
        {
            byte[] elf = new byte[64];
            elf[0] = 0x7F;
            elf[1] = (byte)'E';
            elf[2] = (byte)'L';
            elf[3] = (byte)'F';
            elf[4] = 1; // ELFCLASS32
            elf[5] = 1;
            await File.WriteAllBytesAsync(path, elf);
        }

        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "run", path);
        File.Delete(path);
        Assert.Equal(125, exit);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Fact]
    public async Task Run_refuses_a_corrupt_snapshot_with_one_line()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-snap-{Environment.ProcessId}.snap");
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "run", "hello", "--memory", "16M", "--max-instructions", "1000", "--save", path);
        Assert.True(exit == 0, stderr);
        byte[] snapshot = await File.ReadAllBytesAsync(path);
        snapshot[snapshot.Length / 2] ^= 0x40;
        await File.WriteAllBytesAsync(path, snapshot);
        (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "resume", path);
        File.Delete(path);
        Assert.Equal(125, exit);
        Assert.Contains("checksum", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Fact]
    public async Task A_wrong_secret_is_refused_and_the_right_one_accepted()
    {
        await using HostProcess host = await HostProcess.StartAsync("S", secret: "s3cret");
        for (int i = 0; i < 100 && !host.Log.Contains("calls of the control API", StringComparison.Ordinal); i++)
        {
            await Task.Delay(50); // (its log comes on stderr, its readiness on stdout: either may be read first)
        }

        Assert.Contains("calls of the control API", host.Log, StringComparison.Ordinal); // its warm-up's own calls carried the secret
        Assert.DoesNotContain("not answered as a client's would be", host.Log, StringComparison.Ordinal);
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "list", "--host", host.Api, "--secret", "wrong");
        Assert.Equal(125, exit);
        Assert.Contains("wrong or missing secret", stderr);
        (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "vm", "list", "--host", host.Api, "--secret", "s3cret", "--json");
        Assert.True(exit == 0, stderr);
    }
}
