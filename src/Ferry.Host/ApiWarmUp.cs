using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Ferry.Machine.Board;

namespace Ferry.Host;

/// <summary>
/// The host calls its own control API before it announces it, as a move's clients will (the
/// host, its VMs and one VM's status and console, an unknown migration, and the status of a
/// migration under way), round after round, so that the runtime compiles those paths, optimized,
/// before a real move runs beside them. A bench's first measured move had 29 % of both cores'
/// samples in the runtime's tiered compilation, Kestrel's request handling and the API's JSON
/// among what it compiled (docs/results.md, "The runtime's own threads during a move"). A VM of the warm-up image runs for it, a few instructions, then is removed.
/// </summary>
internal static class ApiWarmUp
{
    /// <summary>Calls of each path per round: beyond the 30 after which the runtime compiles a method again.</summary>
    public const int CallsPerRound = 40;

    /// <summary>Runs the rounds; returns the requests made, and those answered otherwise than a client would be (a refused secret, say).</summary>
    public static async Task<(int Calls, int Failed)> RunAsync(string apiUrl, string? secret, GuestImage image, int rounds, TimeSpan tieringDelay, CancellationToken ct)
    {
        using var http = new HttpClient { BaseAddress = new Uri(apiUrl.TrimEnd('/') + "/v1/"), Timeout = TimeSpan.FromSeconds(30) };
        if (secret is { Length: > 0 })
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        }

        string name = $"ferry-api-warm-up-{Guid.NewGuid():n}";
        var start = new StartVmRequest { Name = name, Image = Convert.ToBase64String(image.Bytes), MemoryBytes = 8UL << 20, StopAt = 100_000 };
        using (HttpResponseMessage started = await http.PostAsJsonAsync("vms", start, ApiJson.Options, ct).ConfigureAwait(false))
        {
            started.EnsureSuccessStatusCode();
        }

        // What a migration's status looks like while it runs (its report comes once, at the end).
        var moving = new MigrationStatus
        {
            Id = "warm-up", Vm = name, Strategy = "hybrid", Phase = "postcopy", Done = false, Round = 1, BytesSent = 1 << 20, PagesRemaining = 100, PagesTotal = 256,
            FaultRequests = 3, ElapsedMs = 12.5, RateBitsPerSecond = 1e9, PeerSilentMs = 0.5, Detail = "pushing",
        };
        string[] paths = ["host", "vms", $"vms/{name}", $"vms/{name}/console?follow=false", "migrations/warm-up"];
        int calls = 0, failed = 0;
        bool removed = false;
        try
        {
            for (int round = 0; round < rounds; round++)
            {
                for (int i = 0; i < CallsPerRound; i++)
                {
                    foreach (string path in paths)
                    {
                        using HttpResponseMessage r = await http.GetAsync(path, ct).ConfigureAwait(false);
                        _ = await r.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
                        calls++;
                        bool expected = path.StartsWith("migrations/", StringComparison.Ordinal)
                            ? r.StatusCode == System.Net.HttpStatusCode.NotFound // (no such migration: the error path)
                            : r.IsSuccessStatusCode;
                        failed += expected ? 0 : 1;
                    }

                    _ = JsonSerializer.SerializeToUtf8Bytes(moving, ApiJson.Options);
                }

                await Task.Delay(tieringDelay, ct).ConfigureAwait(false);
            }

            failed += await RemoveAsync(http, name, ct).ConfigureAwait(false);
            calls += 2;
            removed = true;
        }
        finally
        {
            if (!removed)
            {
                _ = await RemoveAsync(http, name, CancellationToken.None).ConfigureAwait(false);
            }
        }

        return (calls, failed);
    }

    /// <summary>Stops the VM and removes it, as a client does after a move; returns the calls that failed.</summary>
    private static async Task<int> RemoveAsync(HttpClient http, string name, CancellationToken ct)
    {
        using HttpResponseMessage stopped = await http.PostAsync($"vms/{name}/stop", null, ct).ConfigureAwait(false);
        using HttpResponseMessage removed = await http.DeleteAsync($"vms/{name}", ct).ConfigureAwait(false);
        return (stopped.IsSuccessStatusCode ? 0 : 1) + (removed.IsSuccessStatusCode ? 0 : 1);
    }
}
