using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ferry.Machine.Board;

namespace Ferry.Cli.Bench;

/// <summary>
/// Boots to <c>ferry-init: ready</c>, timed: Ferry in this process, and QEMU on the same kernel,
/// initramfs and command line with its own OpenSBI (<c>-bios default</c>), once as it runs
/// (wall time) and once under <c>-icount shift=0,sleep=off</c> (instructions: its instret then
/// counts instructions; without icount it counts host ticks). /init's <c>ferry.timing=1</c>
/// line gives the instret at ready; Ferry's count is exact in both modes.
/// </summary>
internal static class LinuxBootBench
{
    private static readonly TimeSpan Timeout = QemuLinuxGuest.BootTimeout;

    /// <summary>The command line of every boot here: kvstore on a 1 MiB table for one op, then power-off.</summary>
    private const string Workload = "workload=kvstore,table_mib=1,ops=1,timing=1";

    public static async Task<LinuxBootResult> RunAsync(ulong memoryBytes, int repeat, bool qemu, CancellationToken ct)
    {
        var ferry = new List<LinuxBootTime>();
        var qemuWall = new List<LinuxBootTime>();
        var qemuCount = new List<LinuxBootTime>();
        LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, null, null, Workload);
        for (int i = 0; i < repeat; i++)
        {
            ferry.Add(await Task.Run(() => Ferry(files, memoryBytes, ct), ct));
            if (qemu)
            {
                qemuWall.Add(await QemuAsync(files, memoryBytes, icount: false, ct));
                qemuCount.Add(await QemuAsync(files, memoryBytes, icount: true, ct));
            }
        }

        return new LinuxBootResult(files.CommandLine, ferry, qemu ? qemuWall : null, qemu ? qemuCount : null);
    }

    private static LinuxBootTime Ferry(LinuxBootFiles files, ulong memoryBytes, CancellationToken ct)
    {
        var console = new ConsoleLog();
        using var machine = new VirtMachine(new MachineConfig { MemorySize = memoryBytes }, console);
        var clock = Stopwatch.StartNew();
        LinuxBoot.Load(machine, files);
        var watcher = new ReadyWatcher(clock);
        console.Echo = watcher;
        using CancellationTokenRegistration stop = ct.Register(machine.RequestStop);
        RunOutcome outcome = machine.Run(ulong.MaxValue);
        ct.ThrowIfCancellationRequested();
        string text = Encoding.ASCII.GetString(console.Read(0).Bytes);
        return watcher.ReadyAt is TimeSpan at && InstretAtReady(text) is ulong instret
            ? new LinuxBootTime(at.TotalSeconds, instret)
            : throw new CliException($"Ferry's Linux boot did not reach ready ({outcome}): {Tail(text)}");
    }

    private static async Task<LinuxBootTime> QemuAsync(LinuxBootFiles files, ulong memoryBytes, bool icount, CancellationToken ct)
    {
        DirectoryInfo dir = Directory.CreateTempSubdirectory("ferry-qemu-boot-");
        try
        {
            var guest = new QemuLinuxGuest(LinuxBoot.ReadKernelImage(files.Kernel, files.KernelName), files.Initrd!, files.CommandLine);
            string[] boot = await guest.WriteAsync(dir.FullName, ct);
            long start = Stopwatch.GetTimestamp();
            await using QemuProcess q = QemuProcess.Start("boot", dir.FullName, icount ? [.. boot, "-icount", "shift=0,sleep=off"] : boot, memoryBytes, incoming: false);
            var clock = Stopwatch.StartNew();
            while (!q.HasExited && clock.Elapsed < Timeout)
            {
                await Task.Delay(20, ct);
            }

            IReadOnlyList<QemuConsoleLine> lines = q.Lines;
            string text = string.Join('\n', lines.Select(l => l.Text));
            QemuConsoleLine? ready = lines.FirstOrDefault(l => l.Text.TrimEnd() == QemuLinuxGuest.ReadyLine);
            return ready is { } r && InstretAtReady(text) is ulong instret
                ? new LinuxBootTime(Stopwatch.GetElapsedTime(start, r.Timestamp).TotalSeconds, icount ? instret : null)
                : throw new CliException($"QEMU's Linux boot did not reach ready{(q.HasExited ? "" : $" in {Timeout.TotalSeconds:0} s")}: {Tail(text)}");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>instret from /init's "ferry-init: timing time T instret I" line.</summary>
    private static ulong? InstretAtReady(string console)
    {
        foreach (string line in console.Split('\n'))
        {
            string l = line.TrimEnd('\r');
            if (l.StartsWith("ferry-init: timing ", StringComparison.Ordinal)
                && ulong.TryParse(l.AsSpan(l.LastIndexOf(' ') + 1), NumberStyles.None, CultureInfo.InvariantCulture, out ulong instret))
            {
                return instret;
            }
        }

        return null;
    }

    private static string Tail(string text) => text.Length > 300 ? text[^300..].ReplaceLineEndings(" ") : text.ReplaceLineEndings(" ");

    /// <summary>Notes when the ready line has been written (the console's echo, on the hart's thread).</summary>
    private sealed class ReadyWatcher(Stopwatch clock) : Stream
    {
        private readonly byte[] _ready = Encoding.ASCII.GetBytes(QemuLinuxGuest.ReadyLine);
        private int _matched;

        public TimeSpan? ReadyAt { get; private set; }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            foreach (byte b in buffer)
            {
                if (ReadyAt is not null)
                {
                    return;
                }

                if (_matched == _ready.Length && b is (byte)'\r' or (byte)'\n')
                {
                    ReadyAt = clock.Elapsed; // the line is complete (the tty ends it with "\r\n")
                    return;
                }

                _matched = _matched < _ready.Length && b == _ready[_matched] ? _matched + 1 : b == _ready[0] ? 1 : 0;
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void WriteByte(byte value) => Write([value]);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>One boot to ready: wall seconds from start (Ferry: machine created; QEMU: process started) and instructions retired (null: not countable).</summary>
public sealed record LinuxBootTime(double Seconds, ulong? Instructions);

/// <summary>Boots to ready (results.json linuxBoot): Ferry's, QEMU's as it runs (seconds) and QEMU's under icount (instructions).</summary>
public sealed record LinuxBootResult(string CommandLine, List<LinuxBootTime> Ferry, List<LinuxBootTime>? Qemu, List<LinuxBootTime>? QemuIcount);
