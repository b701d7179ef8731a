using System.Security.Cryptography;
using System.Text;
using Ferry.Machine.Board;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
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

    public HostAgent(HostOptions options)
    {
        _options = options;
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.WebHost.UseUrls(options.ApiUrl);
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = ApiJson.Options.PropertyNamingPolicy;
            o.SerializerOptions.DefaultIgnoreCondition = ApiJson.Options.DefaultIgnoreCondition;
            o.SerializerOptions.NumberHandling = ApiJson.Options.NumberHandling;
        });
        _app = builder.Build();
        ILogger log = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ferry.host");
        _incoming = new IncomingMigrations(options, _vms, log);
        _outgoing = new OutgoingMigrations(log, _stopping.Token, options.FaultSocketPriority, options.PeerTimeout, options.ReconnectWindow,
            options.StateDir is null ? null : Path.Combine(options.StateDir, "pages"), options.MaxMemoryBytes);
        Map(_app);
    }

    public string ApiUrl { get; private set; } = "";

    public string DataEndpoint { get; private set; } = "";

    public async Task StartAsync()
    {
        if (_options.WarmUpImage is GuestImage warmUp)
        {
            await Ferry.Migration.Local.LocalMigration.WarmUpAsync(warmUp, _stopping.Token).ConfigureAwait(false);
        }

        _incoming.Start(_stopping.Token);
        await _app.StartAsync().ConfigureAwait(false);
        _outgoing.ResumeFromPageFiles();
        ApiUrl = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        DataEndpoint = _options.Advertise ?? _incoming.Endpoint!.ToString();
    }

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
        _incoming.Stop();
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _vms.Dispose();
    }

    private void Map(WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            if (_options.Secret is { Length: > 0 } secret && !Authorized(context.Request, secret))
            {
                context.Response.StatusCode = 401;
                await context.Response.WriteAsJsonAsync(new ErrorResponse("wrong or missing secret (Authorization: Bearer <secret>)"), ApiJson.Options).ConfigureAwait(false);
                return;
            }

            try
            {
                await next(context).ConfigureAwait(false);
            }
            catch (ApiException e)
            {
                context.Response.StatusCode = e.Status;
                await context.Response.WriteAsJsonAsync(new ErrorResponse(e.Message), ApiJson.Options).ConfigureAwait(false);
            }
            catch (BadHttpRequestException e)
            {
                context.Response.StatusCode = 400;
                await context.Response.WriteAsJsonAsync(new ErrorResponse(e.Message), ApiJson.Options).ConfigureAwait(false);
            }
        });

        RouteGroupBuilder api = app.MapGroup("/v1");
        api.MapGet("/host", () => new HostInfo(_options.Name, Version, DataEndpoint, _vms.All().Count));
        api.MapGet("/vms", () => _vms.All().Select(v => v.Status()).ToList());
        api.MapPost("/vms", StartVm);
        api.MapGet("/vms/{name}", (string name) => _vms.Get(name).Status());
        api.MapPost("/vms/{name}/stop", async (string name) =>
        {
            VmInstance vm = _vms.Get(name);
            await vm.StopAsync().ConfigureAwait(false);
            return vm.Status();
        });
        api.MapPost("/vms/{name}/resume", (string name) =>
        {
            VmInstance vm = _vms.Get(name);
            return vm.Resume() ? Results.Ok(vm.Status()) : Results.Conflict(new ErrorResponse($"VM '{name}' is {vm.State.ToString().ToLowerInvariant()}, not resumable"));
        });
        api.MapDelete("/vms/{name}", (string name) =>
        {
            VmInstance vm = _vms.Get(name);
            if (vm.State is VmState.Running or VmState.Migrating or VmState.Incoming)
            {
                throw new ApiException(409, $"VM '{name}' is {vm.State.ToString().ToLowerInvariant()}; stop it first");
            }

            _vms.Remove(name);
            return Results.NoContent();
        });
        api.MapGet("/vms/{name}/console", Console);
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
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.Length > 64 || request.Name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new ApiException(400, "a VM name is 1-64 characters of letters, digits, '-', '_' and '.'");
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

        var machine = new VirtMachine(new MachineConfig { MemorySize = request.MemoryBytes, Icount = request.Icount, IdleSleep = request.IdleSleep });
        try
        {
            if (request.Linux is { } linux)
            {
                LinuxBoot.Load(machine, new LinuxBootFiles
                {
                    Firmware = linux.Firmware is null ? null : Convert.FromBase64String(linux.Firmware),
                    Kernel = Convert.FromBase64String(linux.Kernel),
                    Initrd = linux.Initrd is null ? null : Convert.FromBase64String(linux.Initrd),
                    CommandLine = linux.CommandLine,
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
