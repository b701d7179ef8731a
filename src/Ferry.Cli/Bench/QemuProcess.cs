using System.Diagnostics;
using System.Text;

namespace Ferry.Cli.Bench;

/// <summary>A console line and when it arrived (<see cref="Stopwatch.GetTimestamp"/>).</summary>
internal readonly record struct QemuConsoleLine(long Timestamp, string Text);

/// <summary>
/// One qemu-system-riscv64 process: a guest (bare-metal, or Linux on OpenSBI) on the virt board, its UART on stdout
/// (read continuously, so QEMU never blocks on a full pipe), QMP on a unix socket, stdin a pipe
/// that is never written (so QEMU never touches the terminal).
/// </summary>
internal sealed class QemuProcess : IAsyncDisposable
{
    public const string Binary = "qemu-system-riscv64";
    private const int TailCapacity = 8192;
    private const int StderrCapacity = 8192;
    private const int MaxLines = 100_000;

    private readonly Process _process;
    private readonly Task _stdoutPump;
    private readonly Task _stderrPump;
    private readonly Lock _gate = new();
    private readonly byte[] _tail = new byte[TailCapacity];
    private readonly List<QemuConsoleLine> _lines = [];
    private readonly StringBuilder _stderr = new();
    private readonly MemoryStream _partialLine = new();
    private long _consoleBytes;
    private bool _recordLines = true;

    private QemuProcess(string name, string qmpPath, Process process)
    {
        Name = name;
        QmpPath = qmpPath;
        _process = process;
        _stdoutPump = Task.Run(PumpStdoutAsync);
        _stderrPump = Task.Run(PumpStderrAsync);
    }

    public string Name { get; }

    public string QmpPath { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    /// <summary>Whether <see cref="Binary"/> is an executable file in a PATH directory.</summary>
    public static bool OnPath()
    {
        string? path = Environment.GetEnvironmentVariable("PATH");
        if (string.IsNullOrEmpty(path))
        {
            return false;
        }

        foreach (string dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            try
            {
                string candidate = Path.Combine(dir, Binary);
                if (File.Exists(candidate)
                    && (OperatingSystem.IsWindows() || (File.GetUnixFileMode(candidate) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0))
                {
                    return true;
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
            {
                // An unreadable or malformed PATH entry: skip it.
            }
        }

        return false;
    }

    /// <summary>
    /// Boots a guest with <paramref name="memoryBytes"/> of RAM: <paramref name="boot"/> is the
    /// boot arguments (<c>-bios none -kernel guest.elf</c> for a bare-metal guest; <c>-bios
    /// default -kernel Image -initrd ... -append ...</c> for Linux). With <paramref name="incoming"/>,
    /// QEMU waits (paused) for <c>migrate-incoming</c>.
    /// </summary>
    /// <param name="wrap">A command that runs QEMU (e.g. in a network namespace), or none.</param>
    public static QemuProcess Start(string name, string directory, IReadOnlyList<string> boot, ulong memoryBytes, bool incoming, string[]? wrap = null)
    {
        if (memoryBytes == 0 || memoryBytes % (1UL << 20) != 0)
        {
            throw new ArgumentException($"memory must be a whole number of MiB (got {memoryBytes} bytes)", nameof(memoryBytes));
        }

        string qmp = Path.Combine(directory, name + ".qmp");
        var psi = new ProcessStartInfo(wrap is { Length: > 0 } ? wrap[0] : Binary)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = directory,
        };
        foreach (string arg in wrap is { Length: > 0 } ? wrap.Skip(1).Append(Binary) : [])
        {
            psi.ArgumentList.Add(arg);
        }

        foreach (string arg in (string[])[
            "-M", "virt", "-m", $"{memoryBytes >> 20}M",
            "-nodefaults", "-display", "none", "-serial", "stdio",
            .. boot,
            "-qmp", $"unix:{qmp},server=on,wait=off"])
        {
            psi.ArgumentList.Add(arg);
        }

        if (incoming)
        {
            psi.ArgumentList.Add("-incoming");
            psi.ArgumentList.Add("defer");
        }

        Process process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {Binary}");
        return new QemuProcess(name, qmp, process);
    }

    /// <summary>Bytes the guest has written to its UART so far.</summary>
    public long ConsoleBytes
    {
        get
        {
            lock (_gate)
            {
                return _consoleBytes;
            }
        }
    }

    /// <summary>The last (up to) <paramref name="count"/> bytes of the console, as text.</summary>
    public string ConsoleTail(int count)
    {
        lock (_gate)
        {
            int n = (int)Math.Min(Math.Min(count, TailCapacity), _consoleBytes);
            var bytes = new byte[n];
            long start = _consoleBytes - n;
            for (int i = 0; i < n; i++)
            {
                bytes[i] = _tail[(start + i) % TailCapacity];
            }

            return Encoding.UTF8.GetString(bytes);
        }
    }

    /// <summary>The complete console lines recorded so far (until <see cref="StopRecordingLines"/>).</summary>
    public IReadOnlyList<QemuConsoleLine> Lines
    {
        get
        {
            lock (_gate)
            {
                return [.. _lines];
            }
        }
    }

    public void StopRecordingLines()
    {
        lock (_gate)
        {
            _recordLines = false;
            _lines.Clear();
        }
    }

    /// <summary>What QEMU printed on stderr (capped), trimmed.</summary>
    public string StandardError
    {
        get
        {
            lock (_gate)
            {
                return _stderr.ToString().Trim();
            }
        }
    }

    /// <summary>A one-line description of how the process ended, for error messages.</summary>
    public string ExitDescription()
    {
        string err = StandardError;
        return $"{Name} QEMU exited with status {ExitCode?.ToString() ?? "?"}" + (err.Length > 0 ? $": {err.ReplaceLineEndings(" ")}" : "");
    }

    private async Task PumpStdoutAsync()
    {
        var buffer = new byte[16384];
        Stream stdout = _process.StandardOutput.BaseStream;
        try
        {
            while (true)
            {
                int n = await stdout.ReadAsync(buffer);
                if (n == 0)
                {
                    return;
                }

                long now = Stopwatch.GetTimestamp();
                lock (_gate)
                {
                    for (int i = 0; i < n; i++)
                    {
                        byte b = buffer[i];
                        _tail[_consoleBytes % TailCapacity] = b;
                        _consoleBytes++;
                        if (!_recordLines)
                        {
                            continue;
                        }

                        if (b == (byte)'\n')
                        {
                            if (_lines.Count < MaxLines)
                            {
                                _lines.Add(new QemuConsoleLine(now, Encoding.UTF8.GetString(_partialLine.GetBuffer(), 0, (int)_partialLine.Length)));
                            }

                            _partialLine.SetLength(0);
                        }
                        else if (_partialLine.Length < 4096)
                        {
                            _partialLine.WriteByte(b);
                        }
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // The process is gone.
        }
    }

    private async Task PumpStderrAsync()
    {
        try
        {
            var buffer = new char[4096];
            while (true)
            {
                int n = await _process.StandardError.ReadAsync(buffer);
                if (n == 0)
                {
                    return;
                }

                lock (_gate)
                {
                    if (_stderr.Length < StderrCapacity)
                    {
                        _stderr.Append(buffer, 0, Math.Min(n, StderrCapacity - _stderr.Length));
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // The process is gone.
        }
    }

    /// <summary>Kills QEMU (if it is still running) and waits for it and the output pumps.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }

        try
        {
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(wait.Token);
            await Task.WhenAll(_stdoutPump, _stderrPump).WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException)
        {
            // Leave it to the OS; nothing else can be done.
        }

        _process.Dispose();
    }
}
