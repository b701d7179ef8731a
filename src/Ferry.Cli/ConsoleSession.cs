using Ferry.Host;

namespace Ferry.Cli;

/// <summary>
/// `ferry vm console NAME --follow`: prints the VM's console as it grows and keeps following it
/// across a live migration (when this host's part ends because the VM moved, it goes on at the
/// host the VM's record names, from the byte where this one stopped). When standard input is a
/// terminal the session is interactive: keys go to the VM's UART as typed (raw mode, Ctrl-]
/// detaches); keys typed while the VM is paused for a switchover are held and sent where it
/// runs next.
/// </summary>
internal static class ConsoleSession
{
    private static readonly TimeSpan InputRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan InputGiveUp = TimeSpan.FromSeconds(30);

    public static async Task<int> RunAsync(string hostUrl, ApiCredentials credentials, string name, long? from, bool follow, CancellationToken ct)
    {
        await using Stream stdout = Console.OpenStandardOutput();
        using RawTerminal? raw = follow ? RawTerminal.TryEnter() : null;
        using var session = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var hosts = new List<HostClient> { new(hostUrl, credentials) };
        HostClient current = hosts[0];
        Task input = Task.CompletedTask;
        if (raw is not null)
        {
            await Console.Error.WriteAsync($"[ferry: attached to {name}'s console; Ctrl-] detaches]\r\n").ConfigureAwait(false);
            input = Task.Run(() => ForwardInputAsync(() => Volatile.Read(ref current), name, session), CancellationToken.None);
        }

        try
        {
            long? offset = from;
            while (!session.IsCancellationRequested)
            {
                (_, long end) = await current.ConsoleAsync(name, offset, follow, stdout, session.Token).ConfigureAwait(false);
                offset = end;
                if (!follow)
                {
                    break;
                }

                // This host's part has ended: the VM stopped or exited here, or moved on.
                VmStatus status = await current.StatusAsync(name, session.Token).ConfigureAwait(false);
                if (status.State != VmState.Migrated || status.MovedTo is null)
                {
                    await Console.Error.WriteAsync($"{(raw is null ? "" : "\r\n")}[ferry: {name} is {VmInstance.Describe(status.State)} on {current.BaseUrl}]{(raw is null ? "\n" : "\r\n")}").ConfigureAwait(false);
                    break;
                }

                var next = new HostClient(status.MovedTo, credentials);
                hosts.Add(next);
                await Console.Error.WriteAsync($"{(raw is null ? "" : "\r\n")}[ferry: {name} moved to {next.BaseUrl}; following it there from byte {end}]{(raw is null ? "\n" : "\r\n")}").ConfigureAwait(false);
                Volatile.Write(ref current, next);
            }
        }
        catch (OperationCanceledException) when (session.IsCancellationRequested)
        {
            // Ctrl-C, or Ctrl-] from the input side.
        }
        finally
        {
            await session.CancelAsync().ConfigureAwait(false);
            raw?.Dispose(); // before the input thread is left behind in its blocking read
            foreach (HostClient h in hosts)
            {
                h.Dispose();
            }
        }

        return 0;
    }

    /// <summary>Reads the terminal (a blocking read, on its own thread) and sends each chunk to the host the VM runs on.</summary>
    private static async Task ForwardInputAsync(Func<HostClient> host, string name, CancellationTokenSource session)
    {
        using Stream stdin = RawTerminal.OpenInput();
        byte[] buffer = new byte[256];
        while (!session.IsCancellationRequested)
        {
            int n = stdin.Read(buffer);
            if (n <= 0)
            {
                return;
            }

            int detach = Array.IndexOf(buffer, RawTerminal.DetachKey, 0, n);
            int keep = detach < 0 ? n : detach;
            if (keep > 0)
            {
                await SendAsync(host, name, buffer.AsMemory(0, keep), session.Token).ConfigureAwait(false);
            }

            if (detach >= 0)
            {
                await session.CancelAsync().ConfigureAwait(false);
                return;
            }
        }
    }

    /// <summary>Sends input; while the VM is between hosts (409), tries again until it runs somewhere.</summary>
    private static async Task SendAsync(Func<HostClient> host, string name, ReadOnlyMemory<byte> input, CancellationToken ct)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await host().SendConsoleAsync(name, input, ct).ConfigureAwait(false);
                return;
            }
            catch (CliException e) when (e.Message.Contains("(HTTP 409)", StringComparison.Ordinal) && clock.Elapsed < InputGiveUp)
            {
                await Task.Delay(InputRetry, ct).ConfigureAwait(false);
            }
        }
    }
}
