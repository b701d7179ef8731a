using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu.Translation;
using Ferry.Migration.Metrics;
using Ferry.Migration.Transport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Ferry.Host;

/// <summary>
/// `ferry host`: runs VMs, accepts incoming migrations on the data endpoint and serves the
/// control API (HTTP/JSON on Kestrel). The API only ever talks about VMs and migrations;
/// migration data never crosses it.
/// </summary>
public sealed class HostAgent : IAsyncDisposable
{
    public const string Version = "1";

    private readonly HostOptions _options;
    private readonly WebApplication _app;
    private readonly VmRegistry _vms = new();
    private readonly IncomingMigrations _incoming;
    private readonly OutgoingMigrations _outgoing;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILogger _log;

    public HostAgent(HostOptions options)
    {
        if (options.Secret is { Length: 0 })
        {
            throw new ArgumentException("the shared secret is empty (give a secret, or none)");
        }

        _options = options;
        // No watch for changed configuration files: ASP.NET's default watches its content root (the
        // working directory, with every directory under it) on a thread of its own, which woke for
        // every file written there, a bench's or a build's, during moves.
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.WebHost.UseUrls(options.ApiUrl);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxRequestBytes);
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true); // bad bodies reach ApiErrors

        if (options.Tls is TlsSettings tls)
        {
            // HTTPS with a client certificate required and checked against the same CA as the
            // migration connections; a refusal is logged with the peer and the reason.
            builder.WebHost.UseKestrelHttpsConfiguration();
            builder.WebHost.ConfigureKestrel(k => k.ConfigureHttpsDefaults(h =>
            {
                h.ServerCertificate = tls.Certificate;
                // Allowed at the handshake and required per request (below): a client that
                // presents none then gets a JSON error, and the host logs the peer, which a
                // handshake refused by Kestrel would not.
                h.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
                h.CheckCertificateRevocation = false;
                h.ClientCertificateValidation = (certificate, _, errors) =>
                    tls.Check(certificate, errors, checkName: false, reason => _log!.LogWarning("refused an API connection: {Reason}", reason));
            }));
        }

        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = ApiJson.Options.PropertyNamingPolicy;
            o.SerializerOptions.DefaultIgnoreCondition = ApiJson.Options.DefaultIgnoreCondition;
            o.SerializerOptions.NumberHandling = ApiJson.Options.NumberHandling;
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, ApiJsonContext.Default);
        });
        _app = builder.Build();
        ILogger log = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ferry.host");
        _log = log;
        MigrationTransport transport = new TcpTransport(options.FaultSocketPriority);
        if (options.Tls is TlsSettings migrationTls)
        {
            transport = new TlsTransport(transport, migrationTls);
        }

        _incoming = new IncomingMigrations(options, transport, _vms, log);
        _outgoing = new OutgoingMigrations(log, transport, _stopping.Token, options.PeerTimeout, options.ReconnectWindow,
            options.StateDir is null ? null : Path.Combine(options.StateDir, "pages"), options.MaxMemoryBytes);
        Map(_app);
    }

    public string ApiUrl { get; private set; } = "";

    public string DataEndpoint { get; private set; } = "";

    public async Task StartAsync()
    {
        // The runtime's stop-the-world pauses, recorded from now on for every migration's report.
        _ = Ferry.Migration.Metrics.RuntimeSuspensions.Process;
        // The warm-up migrations go over loopback TCP, the host's own transport; under TLS over the in-memory
        // pipes, whose endpoint is named "localhost" as a host's certificate may be (a loopback address is not).
        MigrationTransport? loopback = _options.Tls is null ? new TcpTransport(_options.FaultSocketPriority) : null;
        if (_options.WarmUpImage is GuestImage warmUp)
        {
            await Ferry.Migration.Local.LocalMigration.WarmUpAsync(warmUp, _options.Tls, loopback, _stopping.Token).ConfigureAwait(false);
            (int methods, TimeSpan took) = Ferry.Migration.Mechanisms.CodePreparation.Run();
            _log.LogInformation("warm-up: compiled {Methods} methods of the migration's code in {Ms:F0} ms", methods, took.TotalMilliseconds);
        }

        if (_options.WarmUpLinux is LinuxBootFiles linux)
        {
            long started = Stopwatch.GetTimestamp();
            (ulong instructions, bool ready) = await Task.Run(() => LinuxWarmUp.Boot(linux, TranslationCache.Process, _stopping.Token)).ConfigureAwait(false);
            _log.LogInformation("warm-up: Linux booted {Outcome} in {Instructions:N0} instructions, {Ms:F0} ms", ready ? "to ready" : "but not to ready",
                instructions, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        if (_options.WarmUpImage is GuestImage again)
        {
            // Last, so that what the boot made hot is tiered up in the rounds' pauses too.
            await SettleTieringAsync(again, loopback).ConfigureAwait(false);
        }

        _incoming.Start(_stopping.Token);
        await _app.StartAsync().ConfigureAwait(false);
        _outgoing.ResumeFromPageFiles();
        ApiUrl = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        DataEndpoint = _options.Advertise ?? _incoming.Endpoint!;
        if (_options.WarmUpImage is GuestImage api)
        {
            await WarmUpApiAsync(api).ConfigureAwait(false);
        }

        if (!IsLoopback(ApiUrl))
        {
            _log.LogWarning("the control API listens on {Url}, not on loopback: anyone who reaches it {Guard}", ApiUrl,
                _options.Tls is not null ? "must still present a certificate of the CA" : _options.Secret is not null ? "can try the secret, in clear text without TLS" : "controls this host (no secret, no TLS)");
        }
    }

    /// <summary>
    /// The runtime compiles a method quickly first and again, optimized, once it has been called
    /// often (with .NET's dynamic PGO, twice, its profile gathered in between), in the background,
    /// a tenth of a second after the last new method; the warm-up's first migrations leave the
    /// migration's hot paths at the quick tiers. Measured on a host's first real move without this
    /// (kvstore, post-copy, 10 Gbit/s), 588 to 662 methods and 369 to 459 ms of compilation at the
    /// source, 449 to 559 methods and 371 to 385 ms at the destination, beside the guest, the push
    /// and the fault path on a 2-core machine. So the warm-up's migrations run again
    /// <see cref="HostOptions.WarmUpTieringRounds"/> times, each after that delay.
    /// </summary>
    private async Task SettleTieringAsync(GuestImage warmUp, MigrationTransport? loopback)
    {
        long started = Stopwatch.GetTimestamp();
        var compiled = new List<string>();
        for (int round = 0; round < _options.WarmUpTieringRounds; round++)
        {
            await Task.Delay(TieringDelay, _stopping.Token).ConfigureAwait(false);
            JitMark mark = JitActivity.Mark();
            long translations = await Ferry.Migration.Local.LocalMigration.WarmUpAsync(warmUp, _options.Tls, loopback, _stopping.Token).ConfigureAwait(false);
            JitActivity jit = JitActivity.Since(mark);
            // (a new VM's guest code is compiled anew every round: not the migration's)
            compiled.Add($"{Math.Max(0, jit.Methods - translations)} ({jit.Ms:F0} ms with {translations} guest translations)");
        }

        if (compiled.Count > 0)
        {
            _log.LogInformation("warm-up: {Rounds} more rounds for the runtime's tiering in {Ms:F0} ms; methods compiled in each: {Compiled}",
                compiled.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds, string.Join(", ", compiled));
        }
    }

    /// <summary>The API's paths called by the host itself, before it is announced (<see cref="ApiWarmUp"/>); under TLS its clients must present a certificate, so it is left out.</summary>
    private async Task WarmUpApiAsync(GuestImage image)
    {
        if (_options.Tls is not null)
        {
            _log.LogInformation("warm-up: the control API's paths are not warmed under TLS (its clients present certificates); a first move compiles them");
            return;
        }

        long started = Stopwatch.GetTimestamp();
        JitMark mark = JitActivity.Mark();
        int calls, failed;
        try
        {
            (calls, failed) = await ApiWarmUp.RunAsync(ApiUrl, _options.Secret, image, rounds: 2, TieringDelay, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !_stopping.IsCancellationRequested)
        {
            _log.LogWarning("warm-up: the control API's own calls failed ({Error}); a first move compiles its paths", e.Message);
            return;
        }

        JitActivity jit = JitActivity.Since(mark);
        _log.LogInformation("warm-up: {Calls} calls of the control API in {Ms:F0} ms ({Methods} methods compiled)", calls, Stopwatch.GetElapsedTime(started).TotalMilliseconds, jit.Methods);
        if (failed > 0)
        {
            _log.LogWarning("warm-up: {Failed} of {Calls} calls of the control API were not answered as a client's would be", failed, calls);
        }
    }

    /// <summary>The runtime's delay before it compiles what became hot (100 ms by default), with a margin.</summary>
    private static readonly TimeSpan TieringDelay = TimeSpan.FromMilliseconds(250);

    /// <summary>Completes when the host is asked to stop (SIGTERM through ASP.NET's lifetime, or <paramref name="cancellation"/>).</summary>
    public async Task WaitForShutdownAsync(CancellationToken cancellation)
    {
        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using CancellationTokenRegistration a = _app.Lifetime.ApplicationStopping.Register(() => stopping.TrySetResult());
        using CancellationTokenRegistration b = cancellation.Register(() => stopping.TrySetResult());
        await stopping.Task.ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        _stopping.Cancel();
        await _incoming.StopAsync().ConfigureAwait(false);
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _vms.Dispose();
    }

    private void Map(WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            if (_options.Tls is not null && context.Connection.ClientCertificate is null)
            {
                _log.LogWarning("refused an API connection: no client certificate given by {Peer} ({Method} {Path})", context.Connection.RemoteIpAddress, context.Request.Method, context.Request.Path);
                context.Response.StatusCode = 401;
                await context.Response.WriteAsJsonAsync(new ErrorResponse("no client certificate given: this host's API requires one issued by its CA (--tls-cert, --tls-key)"), ApiJson.Options).ConfigureAwait(false);
                return;
            }

            if (_options.Secret is { Length: > 0 } secret && !Authorized(context.Request, secret))
            {
                _log.LogWarning("refused an API call from {Peer}: {Method} {Path} without the right secret", context.Connection.RemoteIpAddress, context.Request.Method, context.Request.Path);
                context.Response.StatusCode = 401;
                await context.Response.WriteAsJsonAsync(new ErrorResponse("wrong or missing secret (Authorization: Bearer <secret>)"), ApiJson.Options).ConfigureAwait(false);
                return;
            }

            await ApiErrors.RunAsync(context, next, _log).ConfigureAwait(false);
        });

        RouteGroupBuilder api = app.MapGroup("/v1");
        api.MapGet("/host", () => new HostInfo(_options.Name, Version, DataEndpoint, _vms.All().Count, _options.MaxRequestBytes));
        api.MapGet("/vms", () => _vms.All().Select(v => v.Status()).ToList());
        api.MapPost("/vms", StartVm);
        api.MapGet("/vms/{name}", (string name) => _vms.Get(name).Status());
        api.MapPost("/vms/{name}/stop", async (string name) =>
        {
            VmInstance vm = _vms.Get(name);
            if (vm.State == VmState.Departing && vm.MigrationId is string id)
            {
                // Before the switchover the source owns the VM: cancelling is safe, then it stops here.
                await _outgoing.CancelAndWaitAsync(id, $"VM '{name}'").ConfigureAwait(false);
            }

            await vm.StopAsync().ConfigureAwait(false);
            return vm.Status();
        });
        api.MapPost("/vms/{name}/resume", (string name) =>
        {
            VmInstance vm = _vms.Get(name);
            vm.Resume();
            return vm.Status();
        });
        api.MapDelete("/vms/{name}", (string name) =>
        {
            _vms.Remove(name);
            return Results.NoContent();
        });
        api.MapGet("/vms/{name}/console", Console);
        api.MapPost("/vms/{name}/console", ConsoleInput);
        api.MapPost("/incoming", (IncomingRequest request) =>
        {
            var slot = _incoming.Prepare(request);
            return new IncomingResponse(Convert.ToHexString(slot.Token), DataEndpoint);
        });
        api.MapPost("/vms/{name}/migrate", (string name, MigrateRequest request) => new MigrateResponse(_outgoing.Start(_vms.Get(name), request)));
        api.MapGet("/migrations/{id}", (string id) => _outgoing.Status(id));
        api.MapPost("/migrations/{id}/cancel", (string id) => new { cancelled = _outgoing.Cancel(id) });
        api.MapPost("/migrations/{id}/resume", (string id) => new { resumed = _outgoing.Resume(id) });
    }

    private VmStatus StartVm(StartVmRequest request)
    {
        if (Ferry.Migration.VmName.Check(request.Name) is string badName)
        {
            throw new ApiException(400, badName);
        }

        if (request.MemoryBytes == 0 || request.MemoryBytes > _options.MaxMemoryBytes || request.MemoryBytes % 4096 != 0)
        {
            throw new ApiException(400, $"memory size {request.MemoryBytes} is not acceptable on this host (max {_options.MaxMemoryBytes >> 20} MiB)");
        }

        if (_vms.NameTaken(request.Name))
        {
            throw new ApiException(409, $"a VM named '{request.Name}' already exists on this host");
        }

        if ((request.Image is null) == (request.Linux is null))
        {
            throw new ApiException(400, "give either an image (a guest ELF) or a Linux boot, not both or neither");
        }

        if (request.Linux is { Kernel: null })
        {
            throw new ApiException(400, "a Linux boot needs a kernel");
        }

        var machine = HostDevices.CreateMachine(new MachineConfig { MemorySize = request.MemoryBytes, Icount = request.Icount, IdleSleep = request.IdleSleep },
            request.Disk, request.Net, request.Name, ownTap: false);
        try
        {
            if (request.Linux is { } linux)
            {
                LinuxBoot.Load(machine, new LinuxBootFiles
                {
                    Firmware = linux.Firmware is null ? null : Convert.FromBase64String(linux.Firmware),
                    Kernel = Convert.FromBase64String(linux.Kernel),
                    Initrd = linux.Initrd is null ? null : Convert.FromBase64String(linux.Initrd),
                    CommandLine = linux.CommandLine ?? "",
                });
            }
            else
            {
                machine.Load(GuestImage.Parse(request.Name, Convert.FromBase64String(request.Image!)));
            }
        }
        catch (Exception e) when (e is FormatException or GuestImageException)
        {
            machine.Dispose();
            throw new ApiException(400, e is FormatException ? "the image is not base64" : e.Message);
        }

        var vm = new VmInstance(request.Name, machine, request.StopAt, VmState.Incoming, _options.Name);
        if (!_vms.TryAdd(vm))
        {
            vm.Dispose();
            throw new ApiException(409, $"a VM named '{request.Name}' already exists on this host");
        }

        vm.Boot();
        return vm.Status();
    }

    private async Task Console(HttpContext context, string name, long? from, bool? follow)
    {
        VmInstance vm = _vms.Get(name);
        ConsoleLog log = vm.Machine.Console;
        long offset = from ?? vm.ConsoleStart;
        (long start, byte[] bytes) = log.Read(offset);
        context.Response.ContentType = "application/octet-stream";
        context.Response.Headers["X-Console-Offset"] = start.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await context.Response.Body.WriteAsync(bytes, context.RequestAborted).ConfigureAwait(false);
        offset = start + bytes.Length;
        if (follow != true)
        {
            return;
        }

        await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
        try
        {
            while (!context.RequestAborted.IsCancellationRequested)
            {
                await log.WaitForOutputAsync(offset, context.RequestAborted).ConfigureAwait(false);
                (start, bytes) = log.Read(offset);
                if (bytes.Length > 0)
                {
                    await context.Response.Body.WriteAsync(bytes, context.RequestAborted).ConfigureAwait(false);
                    await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
                    offset = start + bytes.Length;
                }
                else if (vm.State is VmState.Migrated or VmState.Failed or VmState.Exited or VmState.Stopped)
                {
                    return; // nothing more will come from this host
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Largest console input one request may carry (a paste; keystrokes are a few bytes).</summary>
    public const int MaxConsoleInput = 4096;

    private async Task<IResult> ConsoleInput(HttpContext context, string name)
    {
        VmInstance vm = _vms.Get(name);
        byte[] buffer = new byte[MaxConsoleInput + 1];
        int n = 0, read;
        while (n < buffer.Length && (read = await context.Request.Body.ReadAsync(buffer.AsMemory(n), context.RequestAborted).ConfigureAwait(false)) > 0)
        {
            n += read;
        }

        if (n > MaxConsoleInput)
        {
            throw new ApiException(413, $"console input is limited to {MaxConsoleInput} bytes a request");
        }

        if (!vm.TryConsoleInput(buffer.AsSpan(0, n)))
        {
            VmStatus status = vm.Status();
            throw new ApiException(409, $"'{name}' is {status.State} on this host{(status.MovedTo is null ? "" : $" (it moved to {status.MovedTo})")}: input not taken");
        }

        return Results.NoContent();
    }

    /// <summary>Whether a URL's host is a loopback address (or "localhost").</summary>
    public static bool IsLoopback(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out Uri? uri))
        {
            return false;
        }

        return uri.IsLoopback || (System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out System.Net.IPAddress? address) && System.Net.IPAddress.IsLoopback(address));
    }

    private static bool Authorized(HttpRequest request, string secret)
    {
        string header = request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        byte[] given = Encoding.UTF8.GetBytes(header[prefix.Length..]);
        byte[] expected = Encoding.UTF8.GetBytes(secret);
        return CryptographicOperations.FixedTimeEquals(given, expected);
    }
}
