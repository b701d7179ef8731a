using System.Diagnostics;
using System.Text;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>Runs the real `ferry` command (ferry.dll beside the tests) as a child process.</summary>
internal static class Ferry
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "ferry.dll");

    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ferry.slnx")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }

    public static ProcessStartInfo StartInfo(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Dll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach (string variable in new[] { "FERRY_SECRET", "FERRY_SECRET_FILE", "FERRY_TLS_CERT", "FERRY_TLS_KEY", "FERRY_TLS_CA" })
        {
            psi.Environment.Remove(variable);
        }

        psi.Environment.Remove("FERRY_HOST");
        return psi;
    }

    /// <summary>Runs ferry to completion; returns exit code and the raw stdout bytes and stderr text.</summary>
    public static async Task<(int Exit, byte[] Stdout, string Stderr)> RunAsync(TimeSpan timeout, params string[] args)
    {
        using var process = Process.Start(StartInfo(args))!;
        process.StandardInput.Close();
        using var stdout = new MemoryStream();
        Task copy = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"ferry {string.Join(' ', args)} did not finish within {timeout}");
        }

        await copy;
        return (process.ExitCode, stdout.ToArray(), await stderr);
    }

    public static async Task<(int Exit, string Stdout, string Stderr)> RunTextAsync(TimeSpan timeout, params string[] args)
    {
        (int exit, byte[] stdout, string stderr) = await RunAsync(timeout, args);
        return (exit, Encoding.UTF8.GetString(stdout), stderr);
    }
}

/// <summary>A `ferry host` process on free loopback ports.</summary>
internal sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log;

    private HostProcess(Process process, string api, string data, StringBuilder log)
    {
        _process = process;
        _log = log;
        Api = api;
        Data = data;
    }

    public string Api { get; }

    public string Data { get; }

    /// <summary>The process's id (for /proc/PID/status).</summary>
    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Sends a signal (STOP, CONT, KILL...) to the agent.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        await kill.WaitForExitAsync();
    }

    public static async Task<HostProcess> StartAsync(string name, string? secret = null, params string[] extra)
    {
        var args = new List<string> { "host", "--name", name };
        if (!extra.Contains("--listen"))
        {
            args.AddRange(["--listen", "127.0.0.1:0"]);
        }

        if (secret is not null)
        {
            args.AddRange(["--secret", secret]);
        }

        args.AddRange(extra);
        if (!extra.Contains("--warm-up-rounds") && !extra.Contains("--no-warm-up"))
        {
            // The first warm-up round only: the tiering rounds cost about 2 s each (the shared
            // TwoHosts run the product's default).
            args.AddRange(["--warm-up-rounds", "0"]);
        }

        var process = Process.Start(Ferry.StartInfo([.. args]))!;
        var log = new StringBuilder();
        var ready = new TaskCompletionSource<(string Api, string Data)>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                ready.TrySetException(new InvalidOperationException("ferry host exited: " + log));
                return;
            }

            lock (log)
            {
                log.AppendLine(e.Data);
            }

            // "ferry host: api http://127.0.0.1:PORT data 127.0.0.1:PORT"
            if (e.Data.StartsWith("ferry host: api ", StringComparison.Ordinal))
            {
                string[] parts = e.Data.Split(' ');
                ready.TrySetResult((parts[3], parts[5]));
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (log)
                {
                    log.AppendLine(e.Data);
                }
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        (string api, string data) = await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
        return new HostProcess(process, api, data, log); // the log goes on growing
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            await SignalAsync("CONT"); // a stopped process would not die until continued
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}

/// <summary>Two hosts shared by the tests of a collection.</summary>
public sealed class TwoHosts : IAsyncLifetime
{
    internal HostProcess A { get; private set; } = null!;

    internal HostProcess B { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Task<HostProcess> a = HostProcess.StartAsync("A", null, "--warm-up-rounds", DefaultWarmUpRounds);
        Task<HostProcess> b = HostProcess.StartAsync("B", null, "--warm-up-rounds", DefaultWarmUpRounds);
        A = await a;
        B = await b;
    }

    /// <summary><c>ferry host</c>'s default (HostOptions.DefaultWarmUpTieringRounds), as a user runs it.</summary>
    internal const string DefaultWarmUpRounds = "2";

    public async Task DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
    }
}

[CollectionDefinition("hosts")]
public sealed class HostsCollection : ICollectionFixture<TwoHosts>;
