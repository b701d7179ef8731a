using System.Diagnostics;
using System.Text;
using Ferry.Host;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// The console as a user at a terminal has it: `ferry run linux` and `ferry vm console --follow`
/// run under a pseudo-terminal (util-linux `script`), keys go to the guest's shell as typed,
/// Ctrl-] leaves, and a followed console goes on at the destination after a live migration.
/// </summary>
[Collection("hosts")]
public sealed class TerminalTests(TwoHosts hosts)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Run_linux_at_a_terminal_is_raw_and_ctrl_bracket_stops_it()
    {
        await using var tty = PtySession.Start("run", "linux");
        await tty.ExpectAsync("ferry$ ", Wait);
        await tty.SendAsync("echo typed-raw\r");
        await tty.ExpectAsync("\ntyped-raw\r", Wait); // the guest's own output, not the command line's echo
        await tty.SendAsync("\u001d");
        Assert.Equal(130, await tty.WaitForExitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Followed_console_types_into_the_vm_and_follows_it_across_a_migration()
    {
        string name = $"tty-{Guid.NewGuid():N}"[..12];
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Wait, "vm", "start", "linux", "--host", hosts.A.Api, "--name", name, "--memory", "64M");
        Assert.True(exit == 0, stderr);
        await using var tty = PtySession.Start("vm", "console", name, "--host", hosts.A.Api, "--follow");
        await tty.ExpectAsync("ferry$ ", Wait);
        await tty.SendAsync("echo before-move\r");
        await tty.ExpectAsync("\nbefore-move\r", Wait);

        (exit, string stdout, stderr) = await Ferry.RunTextAsync(Wait, "migrate", name, "--from", hosts.A.Api, "--to", hosts.B.Api, "--strategy", "postcopy", "--quiet");
        Assert.True(exit == 0, stderr + stdout);
        await tty.ExpectAsync($"[ferry: {name} moved to {hosts.B.Api}", Wait);

        await tty.SendAsync("echo after-move\r");
        await tty.ExpectAsync("\nafter-move\r", Wait);
        await tty.SendAsync("\u001d");
        Assert.Equal(0, await tty.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(VmState.Running, (await Api.StatusAsync(hosts.B.Api, name)).State);
    }

    /// <summary>ferry under `script -qfec CMD /dev/null`: its stdin and stdout are a pseudo-terminal; ours are pipes to script.</summary>
    private sealed class PtySession : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly Task _pump;

        private PtySession(Process process)
        {
            _process = process;
            _pump = Task.Run(async () =>
            {
                char[] buffer = new char[4096];
                int n;
                while ((n = await process.StandardOutput.ReadAsync(buffer)) > 0)
                {
                    lock (_output)
                    {
                        _output.Append(buffer, 0, n);
                    }
                }
            });
        }

        public static PtySession Start(params string[] args)
        {
            string command = string.Join(' ', new[] { "dotnet", Ferry.Dll }.Concat(args).Select(a => "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'"));
            var psi = new ProcessStartInfo("script")
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string a in (string[])["-q", "-f", "-e", "-c", command, "/dev/null"])
            {
                psi.ArgumentList.Add(a);
            }

            psi.Environment.Remove("FERRY_SECRET");
            psi.Environment["TERM"] = "xterm";
            return new PtySession(Process.Start(psi)!);
        }

        public string Output
        {
            get
            {
                lock (_output)
                {
                    return _output.ToString();
                }
            }
        }

        public async Task SendAsync(string keys)
        {
            await _process.StandardInput.WriteAsync(keys);
            await _process.StandardInput.FlushAsync();
        }

        public async Task ExpectAsync(string text, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (!Output.Contains(text, StringComparison.Ordinal))
            {
                Assert.True(clock.Elapsed < timeout && !_process.HasExited, $"no '{text.ReplaceLineEndings("\\n")}' in:\n{Output}");
                await Task.Delay(50);
            }
        }

        public async Task<int> WaitForExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"still running {timeout} after Ctrl-]:\n{Output}");
            }

            return _process.ExitCode;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync();
            await _pump;
            _process.Dispose();
        }
    }
}
