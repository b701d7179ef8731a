using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Ferry.Host;

namespace Ferry.Cli;

/// <summary>The CLI's side of a host agent's control API.</summary>
internal sealed class HostClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _clientCertificate;
    private string? _tlsRefusal;

    public HostClient(string url, ApiCredentials? credentials)
    {
        credentials ??= ApiCredentials.None;
        string scheme = credentials.Tls is null ? "http://" : "https://";
        if (!Uri.TryCreate(url.Contains("://", StringComparison.Ordinal) ? url : scheme + url, UriKind.Absolute, out Uri? uri))
        {
            throw new CliException($"'{url}' is not a host URL (example: http://127.0.0.1:7701)");
        }

        BaseUrl = uri;
        var handler = new SocketsHttpHandler();
        if (credentials.Tls is { } tls)
        {
            // Mutual TLS: this client's certificate for the host, the host's checked against the CA.
            _clientCertificate = true;
            handler.SslOptions = tls.ClientOptions(uri.Host, reason => _tlsRefusal = reason);
        }

        _http = new HttpClient(handler) { BaseAddress = uri, Timeout = Timeout.InfiniteTimeSpan };
        if (credentials.Secret is { } secret)
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        }
    }

    public Uri BaseUrl { get; }

    /// <summary>Starts a VM; an image too large for the host's request limit is refused here, before it is sent.</summary>
    public async Task<VmStatus> StartVmAsync(StartVmRequest request, CancellationToken ct)
    {
        if (Ferry.Migration.VmName.Check(request.Name) is string badName)
        {
            throw new CliException(badName);
        }

        long base64 = (request.Image?.Length ?? 0) + (request.Linux is { } l ? (l.Firmware?.Length ?? 0) + l.Kernel.Length + (l.Initrd?.Length ?? 0) : 0);
        HostInfo host = await SendAsync<HostInfo>(HttpMethod.Get, "v1/host", null, ct).ConfigureAwait(false);
        if (host.MaxRequestBytes > 0 && base64 + (64 << 10) > host.MaxRequestBytes)
        {
            throw new CliException($"image too large ({base64 / 4 * 3 >> 20} MiB, limit {(host.MaxRequestBytes - (64 << 10)) / 4 * 3 >> 20} MiB on {BaseUrl})");
        }

        return await SendAsync<VmStatus>(HttpMethod.Post, "v1/vms", request, ct).ConfigureAwait(false);
    }

    public Task<List<VmStatus>> ListAsync(CancellationToken ct) => SendAsync<List<VmStatus>>(HttpMethod.Get, "v1/vms", null, ct);

    public Task<VmStatus> StatusAsync(string name, CancellationToken ct) => SendAsync<VmStatus>(HttpMethod.Get, $"v1/vms/{Uri.EscapeDataString(name)}", null, ct);

    public Task<VmStatus> StopAsync(string name, CancellationToken ct) => SendAsync<VmStatus>(HttpMethod.Post, $"v1/vms/{Uri.EscapeDataString(name)}/stop", null, ct);

    public Task<VmStatus> ResumeAsync(string name, CancellationToken ct) => SendAsync<VmStatus>(HttpMethod.Post, $"v1/vms/{Uri.EscapeDataString(name)}/resume", null, ct);

    public async Task RemoveAsync(string name, CancellationToken ct) => await SendAsync<object?>(HttpMethod.Delete, $"v1/vms/{Uri.EscapeDataString(name)}", null, ct).ConfigureAwait(false);

    public Task<IncomingResponse> PrepareIncomingAsync(IncomingRequest request, CancellationToken ct) => SendAsync<IncomingResponse>(HttpMethod.Post, "v1/incoming", request, ct);

    public Task<MigrateResponse> MigrateAsync(string name, MigrateRequest request, CancellationToken ct) => SendAsync<MigrateResponse>(HttpMethod.Post, $"v1/vms/{Uri.EscapeDataString(name)}/migrate", request, ct);

    public Task<MigrationStatus> MigrationAsync(string id, CancellationToken ct) => SendAsync<MigrationStatus>(HttpMethod.Get, $"v1/migrations/{Uri.EscapeDataString(id)}", null, ct);

    public Task CancelMigrationAsync(string id, CancellationToken ct) => SendAsync<object?>(HttpMethod.Post, $"v1/migrations/{Uri.EscapeDataString(id)}/cancel", null, ct);

    public async Task<bool> ResumeMigrationAsync(string id, CancellationToken ct)
        => (await SendAsync<ResumeResponse>(HttpMethod.Post, $"v1/migrations/{Uri.EscapeDataString(id)}/resume", null, ct).ConfigureAwait(false)).Resumed;

    private sealed record ResumeResponse(bool Resumed);

    /// <summary>Copies the console to <paramref name="output"/>; returns the offsets the bytes start and end at.</summary>
    public async Task<(long Start, long End)> ConsoleAsync(string name, long? from, bool follow, Stream output, CancellationToken ct)
    {
        string query = $"v1/vms/{Uri.EscapeDataString(name)}/console?follow={(follow ? "true" : "false")}" + (from is long f ? $"&from={f}" : "");
        using var request = new HttpRequestMessage(HttpMethod.Get, query);
        using HttpResponseMessage response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        long offset = response.Headers.TryGetValues("X-Console-Offset", out IEnumerable<string>? values) ? long.Parse(values.First(), System.Globalization.CultureInfo.InvariantCulture) : 0;
        await using Stream body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        byte[] buffer = new byte[16 << 10];
        long end = offset;
        int n;
        while ((n = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
            await output.FlushAsync(ct).ConfigureAwait(false);
            end += n;
        }

        return (offset, end);
    }

    /// <summary>Waits until the VM's console has shown a line that <paramref name="match"/> accepts (e.g. a Linux guest's ready line).</summary>
    public async Task WaitForConsoleLineAsync(string name, string what, Func<string, bool> match, TimeSpan timeout, CancellationToken ct)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            using var buffer = new MemoryStream();
            await ConsoleAsync(name, 0, false, buffer, ct).ConfigureAwait(false);
            if (System.Text.Encoding.ASCII.GetString(buffer.ToArray()).Split('\n').Any(l => match(l.TrimEnd('\r'))))
            {
                return;
            }

            if (clock.Elapsed > timeout)
            {
                throw new CliException($"{name}: no {what} on its console within {timeout.TotalSeconds:0} s");
            }

            await Task.Delay(100, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Types <paramref name="input"/> on the VM's console (its UART); refused (409) while it does not run on this host.</summary>
    public async Task SendConsoleAsync(string name, ReadOnlyMemory<byte> input, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v1/vms/{Uri.EscapeDataString(name)}/console") { Content = new ReadOnlyMemoryContent(input) };
        using HttpResponseMessage response = await SendRawAsync(request, HttpCompletionOption.ResponseContentRead, ct).ConfigureAwait(false);
    }

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType(), options: ApiJson.Options);
        }

        using HttpResponseMessage response = await SendRawAsync(request, HttpCompletionOption.ResponseContentRead, ct).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NoContent || typeof(T) == typeof(object))
        {
            return default!;
        }

        return await response.Content.ReadFromJsonAsync<T>(ApiJson.Options, ct).ConfigureAwait(false)
            ?? throw new CliException($"{BaseUrl}: empty response");
    }

    private async Task<HttpResponseMessage> SendRawAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken ct)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new CliException(Unreachable(e));
        }

        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        string message;
        try
        {
            message = (await response.Content.ReadFromJsonAsync<ErrorResponse>(ApiJson.Options, ct).ConfigureAwait(false))?.Error ?? response.ReasonPhrase ?? "";
        }
        catch (Exception)
        {
            message = response.ReasonPhrase ?? "";
        }

        response.Dispose();
        if (response.StatusCode == HttpStatusCode.RequestEntityTooLarge)
        {
            throw new CliException($"{BaseUrl}: image too large: {message} (HTTP 413)");
        }

        throw new CliException($"{BaseUrl}: {message} (HTTP {(int)response.StatusCode})");
    }

    /// <summary>Why a request failed, in one line: TLS refusals named as such.</summary>
    private string Unreachable(HttpRequestException e)
    {
        string detail = e.InnerException?.Message ?? e.Message;
        if (_tlsRefusal is { } refusal)
        {
            return $"TLS with host {BaseUrl} failed: {refusal}";
        }

        if (BaseUrl.Scheme == Uri.UriSchemeHttps && e.HttpRequestError is HttpRequestError.SecureConnectionError or HttpRequestError.ResponseEnded or HttpRequestError.Unknown)
        {
            return _clientCertificate
                ? $"TLS with host {BaseUrl} failed (does it trust this client's certificate?): {detail}"
                : $"TLS with host {BaseUrl} failed: no client certificate given (--tls-cert, --tls-key, --tls-ca or $FERRY_TLS_*): {detail}";
        }

        if (BaseUrl.Scheme == Uri.UriSchemeHttp && e.HttpRequestError is HttpRequestError.ResponseEnded or HttpRequestError.InvalidResponse)
        {
            return $"host {BaseUrl} closed the connection: is it a TLS host (use https:// with --tls-cert, --tls-key, --tls-ca)? ({detail})";
        }

        return $"host {BaseUrl} is unreachable: {e.Message}";
    }

    public void Dispose() => _http.Dispose();
}
