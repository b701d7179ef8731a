using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// A Linux TAP interface (/dev/net/tun, TUNSETIFF with IFF_TAP | IFF_NO_PI: whole Ethernet
/// frames, no packet information header), up and enslaved to a bridge. The file descriptor is
/// non-blocking; a reader polls it with a timeout so that it can be stopped. Creating one needs
/// CAP_NET_ADMIN.
/// </summary>
public sealed unsafe partial class TapDevice : IDisposable
{
    private const int ORdwr = 2, ONonblock = 0x800, OCloexec = 0x80000;
    private const ulong TunSetIff = 0x400454ca;
    private const short IffTap = 0x0002, IffNoPi = 0x1000;
    private const short PollIn = 0x0001;
    private const int EAgain = 11, EIntr = 4;
    private const int AfInet = 2, SockDgram = 2;
    private const ulong SiocGetIfFlags = 0x8913, SiocSetIfFlags = 0x8914;
    private const short IffUp = 0x1;

    private int _fd;

    /// <summary>Creates the TAP (named <paramref name="ifname"/>, or by the kernel), brings it up and joins it to <paramref name="bridge"/> (empty: none).</summary>
    public TapDevice(string? ifname, string bridge)
    {
        if (!File.Exists("/dev/net/tun"))
        {
            throw new IOException("--net tap: /dev/net/tun does not exist on this host");
        }

        _fd = Open("/dev/net/tun", ORdwr | ONonblock | OCloexec);
        if (_fd < 0)
        {
            throw new IOException($"--net tap: cannot open /dev/net/tun: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        byte* ifr = stackalloc byte[40];
        new Span<byte>(ifr, 40).Clear();
        if (ifname is not null)
        {
            System.Text.Encoding.ASCII.GetBytes(ifname).AsSpan(0, Math.Min(ifname.Length, 15)).CopyTo(new Span<byte>(ifr, 15));
        }

        *(short*)(ifr + 16) = IffTap | IffNoPi;
        if (Ioctl(_fd, TunSetIff, ifr) < 0)
        {
            string error = Marshal.GetLastPInvokeErrorMessage();
            Dispose();
            throw new IOException($"--net tap: cannot create TAP {ifname ?? "interface"}: {error} (root or CAP_NET_ADMIN needed)");
        }

        Name = System.Text.Encoding.ASCII.GetString(new ReadOnlySpan<byte>(ifr, 16)).TrimEnd('\0');
        try
        {
            if (bridge.Length > 0)
            {
                if (!Directory.Exists($"/sys/class/net/{bridge}/bridge"))
                {
                    throw new IOException($"--net tap: bridge {bridge} does not exist (create it: scripts/ferry-net.sh up)");
                }

                Ip("link", "set", "dev", Name, "master", bridge);
            }

            Ip("link", "set", "dev", Name, "up");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The interface's name (tap0, or what was asked).</summary>
    public string Name { get; } = "";

    /// <summary>Sends one frame; false if the interface could not take it (down, or its queue full): dropped, as by a real card.</summary>
    public bool Send(ReadOnlySpan<byte> frame)
    {
        fixed (byte* p = frame)
        {
            return Write(_fd, p, (nint)frame.Length) == frame.Length;
        }
    }

    /// <summary>
    /// Brings the interface's link up or down (SIOCSIFFLAGS, at once: a bridge disables a port
    /// that goes down and forgets the addresses it learnt there, where carrier changes reach it
    /// only through the kernel's delayed link watch). Throws <see cref="IOException"/> on failure.
    /// </summary>
    public void SetLinkUp(bool up)
    {
        int socket = Socket(AfInet, SockDgram | OCloexec, 0);
        if (socket < 0)
        {
            throw new IOException($"TAP {Name}: socket for its flags: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        try
        {
            byte* ifr = stackalloc byte[40];
            new Span<byte>(ifr, 40).Clear();
            System.Text.Encoding.ASCII.GetBytes(Name).AsSpan(0, Math.Min(Name.Length, 15)).CopyTo(new Span<byte>(ifr, 15));
            if (Ioctl(socket, SiocGetIfFlags, ifr) < 0)
            {
                throw new IOException($"TAP {Name}: cannot read its flags: {Marshal.GetLastPInvokeErrorMessage()}");
            }

            short flags = *(short*)(ifr + 16);
            *(short*)(ifr + 16) = up ? (short)(flags | IffUp) : (short)(flags & ~IffUp);
            if (Ioctl(socket, SiocSetIfFlags, ifr) < 0)
            {
                throw new IOException($"TAP {Name}: cannot bring its link {(up ? "up" : "down")}: {Marshal.GetLastPInvokeErrorMessage()}");
            }
        }
        finally
        {
            Close(socket);
        }
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for a frame and reads it into <paramref name="buffer"/>; its length, or 0 for none.</summary>
    public int Receive(Span<byte> buffer, int timeoutMs)
    {
        int fd = Volatile.Read(ref _fd);
        if (fd < 0)
        {
            return 0;
        }

        PollFd pfd = new() { Fd = fd, Events = PollIn };
        int ready = Poll(&pfd, 1, timeoutMs);
        if (ready <= 0)
        {
            return 0;
        }

        fixed (byte* p = buffer)
        {
            nint n = Read(fd, p, buffer.Length);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return errno is EAgain or EIntr ? 0 : throw new IOException($"TAP {Name}: read failed: {Marshal.GetPInvokeErrorMessage(errno)}");
            }

            return (int)n;
        }
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            Close(fd); // a TAP without IFF_PERSIST goes away with its last descriptor
        }
    }

    private static void Ip(params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi) ?? throw new IOException("--net tap: cannot run ip(8)");
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new IOException($"--net tap: ip {string.Join(' ', args)}: {error.Trim()}");
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, ulong request, byte* arg);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint Read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
