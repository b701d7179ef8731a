using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ferry.Cli.Bench;

/// <summary>One QEMU migration to run: the guest, the machine size and QEMU's migration settings.</summary>
/// <param name="Workload">A label, e.g. "kvstore".</param>
/// <param name="Image">The (config-patched) guest ELF bytes.</param>
/// <param name="MemoryBytes">Guest RAM (a whole number of MiB), e.g. 256 MiB.</param>
/// <param name="Strategy">"precopy", "postcopy", or "postcopy-preempt" (post-copy with its separate channel for fault replies).</param>
/// <param name="BandwidthBitsPerSecond">0 = unlimited; else max-bandwidth and max-postcopy-bandwidth = bits/8 bytes per second.</param>
/// <param name="DowntimeLimit">downtime-limit (whole milliseconds).</param>
/// <param name="WarmUp">How long the guest runs on the source before the migration starts.</param>
/// <param name="Timeout">Give up (migrate_cancel) this long after the migrate command.</param>
public sealed record QemuMigrationSpec(
    string Workload,
    byte[] Image,
    ulong MemoryBytes,
    string Strategy,
    long BandwidthBitsPerSecond,
    TimeSpan DowntimeLimit,
    TimeSpan WarmUp,
    TimeSpan Timeout)
{
    /// <summary>A command that runs the destination QEMU (e.g. in a network namespace), or none.</summary>
    public string[]? DestinationWrap { get; init; }

    /// <summary>The destination's address for the migration stream.</summary>
    public string DestinationAddress { get; init; } = "127.0.0.1";

    /// <summary>
    /// A Linux guest instead of <see cref="Image"/>: booted on QEMU's own OpenSBI
    /// (<c>-bios default -kernel -initrd -append</c>); the warm-up starts at its
    /// <c>ferry-init: ready</c> line.
    /// </summary>
    public QemuLinuxGuest? Linux { get; init; }

    /// <summary>More QEMU arguments for the source (devices: a disk, a network card on its own TAP).</summary>
    public string[] SourceArgs { get; init; } = [];

    /// <summary>More QEMU arguments for the destination (the same devices; its own TAP).</summary>
    public string[] DestinationArgs { get; init; } = [];

    /// <summary>A Linux guest: a console line (after the ready line) that says its service is up; the warm-up starts there.</summary>
    public string? ServiceReadyLine { get; init; }

    /// <summary>Called once the guest is ready (before the warm-up), e.g. to start its clients; it must return promptly.</summary>
    public Func<CancellationToken, Task>? OnGuestReady { get; init; }

    /// <summary>Called when the run ends (completed or not), before the QEMUs are stopped: e.g. to stop the guest's clients while it still answers.</summary>
    public Func<Task>? BeforeShutdown { get; init; }

    /// <summary>How long the guest runs on at the destination after the migration completed, before it is checked.</summary>
    public TimeSpan RunAfter { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>A Linux boot for QEMU: the kernel Image (raw: QEMU's riscv loader takes no gzip), the initramfs and the command line.</summary>
public sealed record QemuLinuxGuest(byte[] Kernel, byte[] Initrd, string CommandLine)
{
    /// <summary>The line /init prints once the system is up.</summary>
    public const string ReadyLine = "ferry-init: ready";

    /// <summary>Longest a boot to <see cref="ReadyLine"/> may take before the run counts as failed.</summary>
    public static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Writes the files into <paramref name="directory"/> and returns QEMU's boot arguments.</summary>
    public async Task<string[]> WriteAsync(string directory, CancellationToken ct)
    {
        string kernel = Path.Combine(directory, "Image"), initrd = Path.Combine(directory, "initramfs.cpio.gz");
        await File.WriteAllBytesAsync(kernel, Kernel, ct);
        await File.WriteAllBytesAsync(initrd, Initrd, ct);
        return ["-bios", "default", "-kernel", kernel, "-initrd", initrd, "-append", CommandLine];
    }
}

/// <summary>What one QEMU migration measured (see <see cref="QemuMigration.RunAsync"/> for each figure's source).</summary>
public sealed record QemuRunResult(
    string Strategy,
    string Workload,
    bool Completed,
    string? Error,
    double TotalTimeMs,
    double DowntimeMs,
    long BytesOnWire,
    long? NetworkFaults,
    double? SetupTimeMs,
    int? Rounds,
    double? GuestMips,
    string DestinationConsoleTail)
{
    /// <summary>Post-copy: the destination's postcopy-blocktime (ms the vCPUs spent blocked on faults, overlapped), null otherwise.</summary>
    public double? BlocktimeMs { get; init; }

    /// <summary>Post-copy: the destination's postcopy-vcpu-blocktime of vCPU 0.</summary>
    public double? VcpuBlocktimeMs { get; init; }

    /// <summary>The guest's speed at the destination from its resume until the migration completed (from its console progress).</summary>
    public double? GuestMipsDuring { get; init; }

    /// <summary>Wall-clock instants of a completed migration (QMP event times): the migrate command, the source's STOP, the destination's RESUME, the later completion.</summary>
    public QemuMigrationMarks? Marks { get; init; }
}

/// <summary>When a QEMU migration started, paused the guest, resumed it at the destination and completed (wall clock).</summary>
public sealed record QemuMigrationMarks(DateTimeOffset Started, DateTimeOffset? Stopped, DateTimeOffset Resumed, DateTimeOffset Completed);

/// <summary>
/// Runs QEMU's own pre-copy or post-copy migration of a guest between two local
/// qemu-system-riscv64 processes, for comparison with Ferry's migrations.
/// </summary>
/// <remarks>
/// <para>Sequence: write the image to a temp dir; start the destination (<c>-incoming defer</c>)
/// and the source (running from the start); on both, <c>qmp_capabilities</c>,
/// <c>migrate-set-capabilities</c> (events; postcopy-ram for post-copy) and
/// <c>migrate-set-parameters</c> (max-bandwidth, max-postcopy-bandwidth, downtime-limit); the
/// destination listens on a free loopback port (<c>migrate-incoming</c>); after the warm-up the
/// source gets <c>migrate</c>, and <c>query-migrate</c> is polled every 50 ms until completed or
/// failed, or until the timeout (then <c>migrate_cancel</c>).</para>
/// <para>Post-copy: <c>migrate-start-postcopy</c> is sent right after <c>migrate</c> returns.
/// QEMU only accepts it once a migration exists (status setup), and switches at the first
/// iteration of its migration thread: RAM setup has marked every page dirty (the "first pass"
/// has begun) but sent none, so the switch happens before any page is sent (the source's
/// precopy-bytes stays ~0) and post-copy moves essentially all of RAM, background push plus
/// faults, like Ferry's post-copy which sends nothing ahead.</para>
/// <para>Figures. All instants are QMP event timestamps: both QEMUs run on this host and stamp
/// events with the same wall clock (microseconds).
/// <list type="bullet">
/// <item>TotalTimeMs: from the source's MIGRATION "setup" event (emitted inside the migrate
/// command) to the later of the MIGRATION "completed" events of source and destination (and the
/// destination's RESUME). For pre-copy that is the RESUME to within ~0.1 ms; for post-copy it
/// includes the post-copy phase (up to the last page arriving), like Ferry's total, where the
/// RESUME would only mark the switch-over. Fallback: query-migrate total-time (whole ms).</item>
/// <item>DowntimeMs: the source's STOP event to the destination's RESUME event (QEMU 7.2's own
/// downtime figure is unreliable for post-copy).</item>
/// <item>BytesOnWire: query-migrate ram.transferred: RAM pages and their headers, which is
/// nearly all of the stream. QEMU 7.2 reports no count of the device-state sections (CPU,
/// interrupt controllers, UART: a few KiB) or of the return path (post-copy page requests).</item>
/// <item>NetworkFaults: ram.postcopy-requests (post-copy), null for pre-copy.</item>
/// <item>Rounds: ram.dirty-sync-count, the number of dirty-bitmap syncs, which counts the
/// initial sync: a pre-copy that converges after one full pass reports 2, post-copy reports 2.</item>
/// <item>On failure (timeout, error), TotalTimeMs is query-migrate total-time so far, DowntimeMs 0,
/// and the byte and round counts are those of the last query-migrate.</item>
/// <item>GuestMips: from the source console during the warm-up (<see cref="QemuGuestProgress"/>).</item>
/// <item>DestinationConsoleTail: the destination's last 200 console bytes, after letting it run
/// for a further second once the migration completed.</item>
/// </list></para>
/// <para>QEMU 7.2's post-copy sends faster than max-postcopy-bandwidth: measured ~1.25 Gbit/s
/// with a 1 Gbit/s cap (~8 % over at 400 Mbit/s); its pre-copy keeps to max-bandwidth.</para>
/// <para>QEMU 7.2 does not re-arm the ACLINT timer (mtimecmp) on the destination, so a guest
/// that waits for a timer interrupt in WFI (idle; dirty with rate &gt; 0) never wakes after the
/// migration; kvstore, unpaced dirty, verify and compute do not use the timer.</para>
/// </remarks>
public static class QemuMigration
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan EventWait = TimeSpan.FromSeconds(10);
    private const int ConsoleTailBytes = 200;

    /// <summary>Whether qemu-system-riscv64 is on PATH.</summary>
    public static bool Available { get; } = QemuProcess.OnPath();

    /// <summary>
    /// Runs one migration. Failures (QEMU errors, timeouts, a guest that dies) are reported as
    /// Completed = false with the reason; cancelling <paramref name="ct"/> throws
    /// <see cref="OperationCanceledException"/>. Both QEMUs are killed and the temp files deleted in
    /// every case.
    /// </summary>
    public static async Task<QemuRunResult> RunAsync(QemuMigrationSpec spec, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(spec);
        bool postcopy = spec.Strategy switch
        {
            "precopy" => false,
            "postcopy" or "postcopy-preempt" => true,
            _ => throw new ArgumentException($"unknown strategy '{spec.Strategy}' (precopy, postcopy or postcopy-preempt)", nameof(spec)),
        };
        ArgumentOutOfRangeException.ThrowIfNegative(spec.BandwidthBitsPerSecond);
        if (spec.MemoryBytes == 0 || spec.MemoryBytes % (1UL << 20) != 0)
        {
            throw new ArgumentException($"MemoryBytes must be a whole number of MiB (got {spec.MemoryBytes})", nameof(spec));
        }

        var run = new Run(spec, postcopy);
        DirectoryInfo dir = Directory.CreateTempSubdirectory("ferry-qemu-");
        QemuProcess? source = null, destination = null;
        QmpClient? sourceQmp = null, destinationQmp = null;
        try
        {
            string[] boot;
            if (spec.Linux is { } linux)
            {
                boot = await linux.WriteAsync(dir.FullName, ct);
            }
            else
            {
                string kernel = Path.Combine(dir.FullName, "guest.elf");
                await File.WriteAllBytesAsync(kernel, spec.Image, ct);
                boot = ["-bios", "none", "-kernel", kernel];
            }

            destination = QemuProcess.Start("destination", dir.FullName, [.. boot, .. spec.DestinationArgs], spec.MemoryBytes, incoming: true, spec.DestinationWrap);
            source = QemuProcess.Start("source", dir.FullName, [.. boot, .. spec.SourceArgs], spec.MemoryBytes, incoming: false);
            QemuProcess src = source, dst = destination;
            Task<QmpClient> connectDestination = QmpClient.ConnectAsync(dst.Name, dst.QmpPath, () => !dst.HasExited, StartTimeout, ct);
            Task<QmpClient> connectSource = QmpClient.ConnectAsync(src.Name, src.QmpPath, () => !src.HasExited, StartTimeout, ct);
            try
            {
                await Task.WhenAll(connectDestination, connectSource);
            }
            finally
            {
                // Keep whichever connected, so that it gets disposed.
                destinationQmp = connectDestination.IsCompletedSuccessfully ? connectDestination.Result : null;
                sourceQmp = connectSource.IsCompletedSuccessfully ? connectSource.Result : null;
            }

            return await run.ExecuteAsync(src, dst, sourceQmp!, destinationQmp!, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            string error = ex.Message;
            foreach (QemuProcess? p in (QemuProcess?[])[source, destination])
            {
                if (p is { HasExited: true })
                {
                    error += $" ({p.ExitDescription()})";
                }
            }

            return run.Failed(error, destination);
        }
        finally
        {
            try
            {
                if (spec.BeforeShutdown is { } beforeShutdown)
                {
                    await beforeShutdown();
                }
            }
            finally
            {
                foreach (IAsyncDisposable? d in (IAsyncDisposable?[])[sourceQmp, destinationQmp, source, destination])
                {
                    if (d is not null)
                    {
                        await d.DisposeAsync();
                    }
                }

                try
                {
                    dir.Delete(recursive: true);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // Best effort: it is in the temp directory.
                }
            }
        }
    }

    /// <summary>The state of one run, so that a failure at any step can still report what was measured.</summary>
    private sealed class Run(QemuMigrationSpec spec, bool postcopy)
    {
        private JsonElement? _lastQuery;
        private double? _guestMips;
        private double? _guestMipsDuring;
        private double? _blocktimeMs;
        private double? _vcpuBlocktimeMs;
        private QemuMigrationMarks? _marks;

        public async Task<QemuRunResult> ExecuteAsync(QemuProcess src, QemuProcess dst, QmpClient srcQmp, QmpClient dstQmp, CancellationToken ct)
        {
            foreach (QmpClient qmp in (QmpClient[])[srcQmp, dstQmp])
            {
                var caps = new JsonArray { Capability("events", true) };
                if (postcopy)
                {
                    // QEMU's best configuration for post-copy: fault replies on a channel of their
                    // own (preempt) when asked for; blocktime measured on the destination.
                    caps.Add(Capability("postcopy-ram", true));
                    caps.Add(Capability("postcopy-blocktime", true));
                    if (spec.Strategy == "postcopy-preempt")
                    {
                        caps.Add(Capability("postcopy-preempt", true));
                    }
                }

                await qmp.ExecuteAsync("migrate-set-capabilities", new JsonObject { ["capabilities"] = caps }, ct);
                long bytesPerSecond = spec.BandwidthBitsPerSecond / 8; // 0 = unlimited for both parameters
                await qmp.ExecuteAsync("migrate-set-parameters", new JsonObject
                {
                    ["max-bandwidth"] = bytesPerSecond,
                    ["max-postcopy-bandwidth"] = bytesPerSecond,
                    ["downtime-limit"] = (long)Math.Round(spec.DowntimeLimit.TotalMilliseconds),
                }, ct);
            }

            int port = await ListenAsync(dstQmp, spec.DestinationAddress, ct);

            // A Linux guest boots first: the warm-up starts at its ready line.
            if (spec.Linux is not null)
            {
                var boot = Stopwatch.StartNew();
                while (!src.Lines.Any(l => l.Text.TrimEnd() == QemuLinuxGuest.ReadyLine))
                {
                    if (src.HasExited || boot.Elapsed > QemuLinuxGuest.BootTimeout)
                    {
                        return Failed($"the source QEMU did not reach '{QemuLinuxGuest.ReadyLine}' ({(src.HasExited ? src.ExitDescription() : $"{QemuLinuxGuest.BootTimeout.TotalSeconds:0} s")}): {src.ConsoleTail(ConsoleTailBytes).Trim()}", dst);
                    }

                    await Task.Delay(50, ct);
                }
            }

            if (spec.ServiceReadyLine is { } serviceLine)
            {
                var wait = Stopwatch.StartNew();
                while (!src.Lines.Any(l => l.Text.TrimEnd() == serviceLine))
                {
                    if (src.HasExited || wait.Elapsed > StartTimeout)
                    {
                        return Failed($"the guest's service did not start ('{serviceLine}' not seen): {src.ConsoleTail(ConsoleTailBytes).Trim()}", dst);
                    }

                    await Task.Delay(50, ct);
                }
            }

            if (spec.OnGuestReady is { } ready)
            {
                await ready(ct);
            }

            // Warm-up: the source has been running since it started (or its boot); wait out the rest.
            var warm = Stopwatch.StartNew();
            while (warm.Elapsed < spec.WarmUp)
            {
                if (src.HasExited)
                {
                    return Failed($"the source QEMU exited during the warm-up ({src.ExitDescription()}): {src.ConsoleTail(ConsoleTailBytes).Trim()}", dst);
                }

                TimeSpan left = spec.WarmUp - warm.Elapsed;
                await Task.Delay(left < TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100), ct);
            }

            // A guest whose console measures its speed needs three progress lines for it: on a
            // loaded machine the warm-up may end before the third, so it waits for them (bounded).
            var more = Stopwatch.StartNew();
            while (QemuGuestProgress.EstimateMips(src.Lines) is null && QemuGuestProgress.ReportsProgress(src.Lines) && more.Elapsed < StartTimeout && !src.HasExited)
            {
                await Task.Delay(100, ct);
            }

            IReadOnlyList<QemuConsoleLine> sourceLines = src.Lines;
            _guestMips = QemuGuestProgress.EstimateMips(sourceLines);

            double migrateWallMs = (DateTimeOffset.UtcNow - DateTimeOffset.UnixEpoch).TotalMilliseconds;
            long wallToTicks = Stopwatch.GetTimestamp();
            var clock = Stopwatch.StartNew();
            await srcQmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = $"tcp:{spec.DestinationAddress}:{port}" }, ct);
            if (postcopy)
            {
                await srcQmp.ExecuteAsync("migrate-start-postcopy", null, ct);
            }

            string status;
            while (true)
            {
                JsonElement info = await srcQmp.ExecuteAsync("query-migrate", null, ct);
                _lastQuery = info;
                status = Str(info, "status") ?? "none";
                if (postcopy)
                {
                    await ReadBlocktimeAsync(dstQmp, ct);
                }

                if (status is "completed" or "failed" or "cancelled")
                {
                    break;
                }

                if (src.HasExited || dst.HasExited)
                {
                    return Failed($"a QEMU exited during the migration ({(src.HasExited ? src : dst).ExitDescription()})", dst);
                }

                if (clock.Elapsed >= spec.Timeout)
                {
                    return await CancelAsync(srcQmp, dst, status, ct);
                }

                await Task.Delay(PollInterval, ct);
            }

            if (status != "completed")
            {
                string why = Str(_lastQuery!.Value, "error-desc") ?? status;
                return Failed($"QEMU migration {status}: {why}", dst);
            }

            // The destination's RESUME (and, for post-copy, its own completion) can trail the source's completion slightly.
            QmpEvent? resume = await dstQmp.WaitForEventAsync(e => e.Name == "RESUME", EventWait, ct);
            QmpEvent? dstCompleted = await dstQmp.WaitForEventAsync(e => e.Name == "MIGRATION" && e.Status == "completed", EventWait, ct);
            if (resume is null)
            {
                return Failed("the destination never resumed (no RESUME event)", dst);
            }

            if (postcopy)
            {
                await ReadBlocktimeAsync(dstQmp, ct);
            }

            // Let the guest run on at the destination, to show in its console that it kept going.
            await Task.Delay(spec.RunAfter, ct);
            string tail = dst.ConsoleTail(ConsoleTailBytes);
            if (dst.HasExited)
            {
                return Failed($"the guest stopped at the destination ({dst.ExitDescription()}): {tail.Trim()}", dst);
            }

            JsonElement state = await dstQmp.ExecuteAsync("query-status", null, ct);
            if (Str(state, "status") != "running")
            {
                return Failed($"the destination is not running after the migration (status {Str(state, "status")})", dst);
            }

            if (tail.Contains("CORRUPT", StringComparison.Ordinal) || tail.Contains("TRAP ", StringComparison.Ordinal))
            {
                return Failed($"the guest reported an error at the destination: {tail.Trim()}", dst);
            }

            IReadOnlyList<QmpEvent> srcEvents = srcQmp.Events;
            QmpEvent? stop = srcEvents.LastOrDefault(e => e.Name == "STOP" && e.TimestampMs <= resume.TimestampMs);
            QmpEvent? setup = srcEvents.FirstOrDefault(e => e.Name == "MIGRATION" && e.Status == "setup");
            QmpEvent? srcCompleted = srcEvents.LastOrDefault(e => e.Name == "MIGRATION" && e.Status == "completed");

            double total;
            double? queryTotal = Num(_lastQuery, "total-time");
            if (srcCompleted is not null)
            {
                double start = setup?.TimestampMs ?? migrateWallMs;
                double end = Math.Max(Math.Max(srcCompleted.TimestampMs, dstCompleted?.TimestampMs ?? 0), resume.TimestampMs);
                total = end - start;
            }
            else
            {
                total = queryTotal ?? clock.Elapsed.TotalMilliseconds;
            }

            double downtime = stop is not null ? resume.TimestampMs - stop.TimestampMs : Num(_lastQuery, "downtime") ?? 0;

            // The guest's progress at the destination from its resume until the last page arrived
            // (QMP event wall-clock times mapped onto the console lines' Stopwatch ticks).
            long Ticks(double wallMs) => wallToTicks + (long)((wallMs - migrateWallMs) * Stopwatch.Frequency / 1000);
            double endMs = Math.Max(srcCompleted?.TimestampMs ?? resume.TimestampMs, dstCompleted?.TimestampMs ?? 0);
            _guestMipsDuring = QemuGuestProgress.EstimateMipsBetween(src.Lines, dst.Lines, Ticks(resume.TimestampMs), Ticks(endMs));
            static DateTimeOffset At(double ms) => DateTimeOffset.UnixEpoch.AddMilliseconds(ms);
            _marks = new QemuMigrationMarks(At(setup?.TimestampMs ?? migrateWallMs), stop is null ? null : At(stop.TimestampMs), At(resume.TimestampMs), At(endMs));
            return Result(completed: true, error: stop is null ? "no STOP event from the source: downtime is QEMU's own figure" : null,
                total, downtime, tail);
        }

        /// <summary>The destination's blocktime so far (QEMU frees it when the migration ends, so it is read while it runs).</summary>
        private async Task ReadBlocktimeAsync(QmpClient dstQmp, CancellationToken ct)
        {
            try
            {
                JsonElement info = await dstQmp.ExecuteAsync("query-migrate", null, ct);
                if (Num(info, "postcopy-blocktime") is double total)
                {
                    _blocktimeMs = total;
                }

                if (info.TryGetProperty("postcopy-vcpu-blocktime", out JsonElement perVcpu) && perVcpu.ValueKind == JsonValueKind.Array && perVcpu.GetArrayLength() > 0
                    && perVcpu[0].ValueKind == JsonValueKind.Number)
                {
                    _vcpuBlocktimeMs = perVcpu[0].GetDouble();
                }
            }
            catch (QmpException)
            {
                // Not in post-copy (yet): nothing to read.
            }
        }

        /// <summary>Cancels a migration that ran past the timeout and waits (briefly) for QEMU to settle.</summary>
        private async Task<QemuRunResult> CancelAsync(QmpClient srcQmp, QemuProcess dst, string status, CancellationToken ct)
        {
            string seconds = $"{spec.Timeout.TotalSeconds:0.#}s";
            string error = status == "postcopy-active"
                ? $"post-copy did not complete within {seconds}"
                : $"did not converge within {seconds}";
            try
            {
                await srcQmp.ExecuteAsync("migrate_cancel", null, ct);
                var settle = Stopwatch.StartNew();
                while (settle.Elapsed < TimeSpan.FromSeconds(5))
                {
                    JsonElement info = await srcQmp.ExecuteAsync("query-migrate", null, ct);
                    if (Str(info, "status") is "cancelled" or "failed" or "completed")
                    {
                        break;
                    }

                    _lastQuery = info;
                    await Task.Delay(PollInterval, ct);
                }
            }
            catch (Exception ex) when (ex is QmpException or IOException or TimeoutException)
            {
                error += $" (migrate_cancel: {ex.Message})";
            }

            return Failed(error, dst);
        }

        /// <summary>Opens the destination's incoming listener on a free loopback port (retrying if another process takes it first).</summary>
        private static async Task<int> ListenAsync(QmpClient dstQmp, string address, CancellationToken ct)
        {
            for (int attempt = 1; ; attempt++)
            {
                int port = FreePort();
                try
                {
                    await dstQmp.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = $"tcp:{address}:{port}" }, ct);
                    return port;
                }
                catch (QmpException) when (attempt < 5)
                {
                    // The port was taken between probing and binding: try another.
                }
            }
        }

        private static int FreePort()
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            try
            {
                return ((IPEndPoint)probe.LocalEndpoint).Port;
            }
            finally
            {
                probe.Stop();
            }
        }

        public QemuRunResult Failed(string error, QemuProcess? dst) =>
            Result(completed: false, error, Num(_lastQuery, "total-time") ?? 0, 0, dst?.ConsoleTail(ConsoleTailBytes) ?? "");

        private QemuRunResult Result(bool completed, string? error, double total, double downtime, string tail)
        {
            JsonElement? ram = _lastQuery is { } q && q.TryGetProperty("ram", out JsonElement r) ? r : null;
            double? rounds = Num(ram, "dirty-sync-count");
            return new QemuRunResult(
                Strategy: spec.Strategy,
                Workload: spec.Workload,
                Completed: completed,
                Error: error,
                TotalTimeMs: total,
                DowntimeMs: downtime,
                BytesOnWire: (long)(Num(ram, "transferred") ?? 0),
                NetworkFaults: postcopy ? (long)(Num(ram, "postcopy-requests") ?? 0) : null,
                SetupTimeMs: Num(_lastQuery, "setup-time"),
                Rounds: rounds is double n ? (int)n : null,
                GuestMips: _guestMips,
                DestinationConsoleTail: tail)
            {
                BlocktimeMs = _blocktimeMs,
                VcpuBlocktimeMs = _vcpuBlocktimeMs,
                GuestMipsDuring = _guestMipsDuring,
                Marks = _marks,
            };
        }
    }

    private static JsonObject Capability(string name, bool state) => new() { ["capability"] = name, ["state"] = state };

    private static string? Str(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static double? Num(JsonElement? obj, string name) =>
        obj is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
}
