using System.Runtime.InteropServices;

namespace Ferry.Cli;

/// <summary>
/// Standard input as a raw terminal while a console is attached, as QEMU's stdio console does:
/// every key goes to the guest as typed (no line editing, no local echo, Ctrl-C to the guest),
/// output processing kept so that a bare "\n" still starts a new line. <see cref="DetachKey"/>
/// (Ctrl-]) leaves. The terminal's settings come back on <see cref="Dispose"/>.
/// </summary>
internal sealed partial class RawTerminal : IDisposable
{
    /// <summary>Ctrl-]: detaches (as telnet and virsh console).</summary>
    public const byte DetachKey = 0x1d;

    private const int StdinFd = 0;
    private const int TcsaNow = 0;
    private const int TermiosSize = 64; // glibc's struct termios is 60 bytes
    private const int OflagOffset = 4;
    private const uint Opost = 0x1, Onlcr = 0x4;

    private readonly byte[] _saved;
    private bool _restored;

    private RawTerminal(byte[] saved) => _saved = saved;

    /// <summary>Puts standard input in raw mode if it is a terminal; null if it is not (a pipe, a file, or not Linux).</summary>
    public static RawTerminal? TryEnter()
    {
        if (!OperatingSystem.IsLinux() || Console.IsInputRedirected || Isatty(StdinFd) != 1)
        {
            return null;
        }

        byte[] saved = new byte[TermiosSize];
        if (Tcgetattr(StdinFd, ref saved[0]) != 0)
        {
            return null;
        }

        byte[] raw = (byte[])saved.Clone();
        Cfmakeraw(ref raw[0]);
        uint oflag = BitConverter.ToUInt32(raw, OflagOffset) | Opost | Onlcr;
        BitConverter.TryWriteBytes(raw.AsSpan(OflagOffset), oflag);
        return Tcsetattr(StdinFd, TcsaNow, ref raw[0]) == 0 ? new RawTerminal(saved) : null;
    }

    /// <summary>
    /// Standard input as raw bytes: file descriptor 0 itself (Console.OpenStandardInput on a
    /// terminal goes through .NET's own line editor, which would hold every key until Enter).
    /// </summary>
    public static Stream OpenInput() => new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(StdinFd, ownsHandle: false), FileAccess.Read, bufferSize: 0);

    public void Dispose()
    {
        if (!_restored)
        {
            _restored = true;
            _ = Tcsetattr(StdinFd, TcsaNow, ref _saved[0]);
        }
    }

    [LibraryImport("libc", EntryPoint = "isatty")]
    private static partial int Isatty(int fd);

    [LibraryImport("libc", EntryPoint = "tcgetattr")]
    private static partial int Tcgetattr(int fd, ref byte termios);

    [LibraryImport("libc", EntryPoint = "tcsetattr")]
    private static partial int Tcsetattr(int fd, int actions, ref byte termios);

    [LibraryImport("libc", EntryPoint = "cfmakeraw")]
    private static partial void Cfmakeraw(ref byte termios);
}
