using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Ferry.Migration.Transport;

/// <summary>
/// A TCP connection of a migration as a stream. Async operations (the handshake, control
/// frames) are .NET's own. <see cref="EnterKernelBlockingMode"/> switches it, for the fault
/// connection after the switchover, to plain blocking system calls on the socket: .NET runs a
/// blocking Read on a socket that has seen async operations as "wait until the epoll thread
/// says it is readable, then read", two wake-ups per message, each of which may wait for a
/// core; a blocking recv() is one. After the switch every operation must be blocking, and a
/// thread blocked in it is woken by <see cref="Stream.Dispose()"/> (shutdown, then close).
/// </summary>
public sealed unsafe partial class SocketConnectionStream : Stream, IConnectionControl
{
    private const int FGetFl = 3;
    private const int FSetFl = 4;
    private const int ONonBlock = 0x800;
    private const int MsgNoSignal = 0x4000;
    private const int EIntr = 4;
    private const int SolSocket = 1;
    private const int SoPriority = 12;

    private readonly Socket _socket;
    private readonly NetworkStream _network;
    private readonly int _urgentPriority;
    private int _fd = -1;

    /// <param name="urgentPriority">SO_PRIORITY for the connection's packets once it carries the fault path (see <see cref="EnterKernelBlockingMode"/>); 0: leave it.</param>
    public SocketConnectionStream(Socket socket, int urgentPriority = 0)
    {
        _socket = socket;
        _urgentPriority = urgentPriority;
        _network = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>Bytes received and not yet read (the kernel's count): whether a read would not block.</summary>
    public int Available
    {
        get
        {
            try
            {
                return _socket.Available;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return 0;
            }
        }
    }

    /// <summary>
    /// From now on Read and Write are blocking system calls (Linux; elsewhere .NET's own), and
    /// the packets carry the urgent priority for the host's queueing discipline. Call only when
    /// no async operation is pending on the connection or will be started.
    /// </summary>
    public void EnterKernelBlockingMode()
    {
        if (_fd >= 0 || !OperatingSystem.IsLinux())
        {
            return;
        }

        if (_urgentPriority != 0)
        {
            try
            {
                _socket.SetRawSocketOption(SolSocket, SoPriority, BitConverter.GetBytes(_urgentPriority));
            }
            catch (SocketException)
            {
                // Not allowed (above 6 without CAP_NET_ADMIN): the default band.
            }
        }

        int fd = (int)_socket.SafeHandle.DangerousGetHandle();
        int flags = Fcntl(fd, FGetFl, 0);
        if (flags < 0 || Fcntl(fd, FSetFl, flags & ~ONonBlock) < 0)
        {
            return; // stays with .NET's emulation
        }

        _fd = fd;
    }

    /// <summary>
    /// Caps the kernel's buffers for this connection (send and receive, bytes; 0 leaves one as
    /// it is): what the push may have in flight beyond the link, so that a page the guest waits
    /// for is never queued behind megabytes of others (on a fast link the push outruns its
    /// receiver, and autotuned buffers grow to several MiB).
    /// </summary>
    public void LimitKernelBuffers(int send, int receive)
    {
        try
        {
            if (send > 0)
            {
                _socket.SendBufferSize = send;
            }

            if (receive > 0)
            {
                _socket.ReceiveBufferSize = receive;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_fd < 0)
        {
            return _network.Read(buffer);
        }

        // The handle is referenced for the call, so that a close from another thread cannot
        // free the descriptor (for reuse by another connection) while this thread uses it; a
        // closed connection throws ObjectDisposedException here, and Dispose's shutdown wakes a
        // thread blocked in recv.
        bool referenced = false;
        _socket.SafeHandle.DangerousAddRef(ref referenced);
        try
        {
            fixed (byte* p = buffer)
            {
                while (true)
                {
                    nint n = Recv(_fd, p, buffer.Length, 0);
                    if (n >= 0)
                    {
                        return (int)n;
                    }

                    int errno = Marshal.GetLastPInvokeError();
                    if (errno != EIntr)
                    {
                        throw new IOException($"connection lost: receive failed (errno {errno})");
                    }
                }
            }
        }
        finally
        {
            if (referenced)
            {
                _socket.SafeHandle.DangerousRelease();
            }
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_fd < 0)
        {
            _network.Write(buffer);
            return;
        }

        bool referenced = false;
        _socket.SafeHandle.DangerousAddRef(ref referenced); // as in Read
        try
        {
            fixed (byte* p = buffer)
            {
                int sent = 0;
                while (sent < buffer.Length)
                {
                    nint n = Send(_fd, p + sent, buffer.Length - sent, MsgNoSignal);
                    if (n >= 0)
                    {
                        sent += (int)n;
                        continue;
                    }

                    int errno = Marshal.GetLastPInvokeError();
                    if (errno != EIntr)
                    {
                        throw new IOException($"connection lost: send failed (errno {errno})");
                    }
                }
            }
        }
        finally
        {
            if (referenced)
            {
                _socket.SafeHandle.DangerousRelease();
            }
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        => _fd < 0 ? _network.ReadAsync(buffer, cancellationToken) : throw new InvalidOperationException("the connection is in kernel blocking mode");

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_fd < 0)
        {
            return _network.WriteAsync(buffer, cancellationToken);
        }

        // Control frames after the switch (a failure report): written in place.
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try
            {
                // Wakes a thread blocked in recv() (close alone does not).
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }

            _network.Dispose();
        }

        base.Dispose(disposing);
    }

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(int fd, byte* buffer, nint length, int flags);
}
