using System.Diagnostics;

namespace Ferry.Cli;

/// <summary>Host agents started as child processes of this `ferry` (for demo and bench).</summary>
internal sealed class LocalHost : IAsyncDisposable
{
    private readonly Process _process;

    private LocalHost(Process process, string name, string api, string data)
    {
        _process = process;
        Name = name;
        Api = api;
        Data = data;
    }

    public string Name { get; }

    public string Api { get; }

    public string Data { get; }

    /// <param name="listen">The data endpoint's address; its API listens there too (in a network namespace, where this process must reach it).</param>
    /// <param name="wrap">A command that runs the agent (e.g. in a network namespace), or none.</param>
    /// <param name="extra">More `ferry host` options.</param>
    public static async Task<LocalHost> StartAsync(string name, CancellationToken cancellation, string listen = "127.0.0.1", string[]? wrap = null, string[]? extra = null)
    {
        var command = new List<string>(wrap ?? []) { Environment.ProcessPath! };

        // Under `dotnet ferry.dll` the process is dotnet itself: pass the assembly along.
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
        {
            command.Add(typeof(LocalHost).Assembly.Location);
        }

        command.AddRange(["host", "--listen", listen + ":0", "--api", listen + ":0", "--name", name, .. extra ?? []]);
        var psi = new ProcessStartInfo(command[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in command.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        foreach (string variable in new[] { "FERRY_SECRET", "FERRY_SECRET_FILE", "FERRY_TLS_CERT", "FERRY_TLS_KEY", "FERRY_TLS_CA" })
        {
            psi.Environment.Remove(variable); // these hosts are this process's own, reached without credentials
        }

        var process = Process.Start(psi) ?? throw new CliException("could not start a host agent process");
        var ready = new TaskCompletionSource<(string, string)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var errors = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                ready.TrySetException(new CliException($"host agent {name} exited: {errors.ToString().Trim()}"));
            }
            else if (e.Data.StartsWith("ferry host: api ", StringComparison.Ordinal))
            {
                string[] parts = e.Data.Split(' ');
                ready.TrySetResult((parts[3], parts[5]));
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (errors)
                {
                    errors.AppendLine(e.Data);
                }
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            (string api, string data) = await ready.Task.WaitAsync(TimeSpan.FromSeconds(60), cancellation);
            return new LocalHost(process, name, api, data);
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
