using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Ferry.Host;

namespace Ferry.Cli;

/// <summary>The CLI's side of a host agent's control API.</summary>
internal sealed class HostClient : IDisposable
{
    private readonly HttpClient _http;

    public HostClient(string url, string? secret)
    {
        if (!Uri.TryCreate(url.Contains("://", StringComparison.Ordinal) ? url : "http://" + url, UriKind.Absolute, out Uri? uri))
        {
            throw new CliException($"'{url}' is not a host URL (example: http://127.0.0.1:7701)");
        }

        BaseUrl = uri;
        _http = new HttpClient { BaseAddress = uri, Timeout = Timeout.InfiniteTimeSpan };
        if (!string.IsNullOrEmpty(secret))
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        }
    }

    public Uri BaseUrl { get; }

    public Task<VmStatus> StartVmAsync(StartVmRequest request, CancellationToken ct) => SendAsync<VmStatus>(HttpMethod.Post, "v1/vms", request, ct);

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

    /// <summary>Copies the console to <paramref name="output"/>; returns the offset the bytes start at.</summary>
    public async Task<long> ConsoleAsync(string name, long? from, bool follow, Stream output, CancellationToken ct)
    {
        string query = $"v1/vms/{Uri.EscapeDataString(name)}/console?follow={(follow ? "true" : "false")}" + (from is long f ? $"&from={f}" : "");
        using var request = new HttpRequestMessage(HttpMethod.Get, query);
        using HttpResponseMessage response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        long offset = response.Headers.TryGetValues("X-Console-Offset", out IEnumerable<string>? values) ? long.Parse(values.First(), System.Globalization.CultureInfo.InvariantCulture) : 0;
        await using Stream body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        byte[] buffer = new byte[16 << 10];
        int n;
        while ((n = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
            await output.FlushAsync(ct).ConfigureAwait(false);
        }

        return offset;
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
            throw new CliException($"host {BaseUrl} is unreachable: {e.Message}");
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
        throw new CliException($"{BaseUrl}: {message} (HTTP {(int)response.StatusCode})");
    }

    public void Dispose() => _http.Dispose();
}
