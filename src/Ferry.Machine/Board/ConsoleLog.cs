using Ferry.Machine.Devices;

namespace Ferry.Machine.Board;

/// <summary>
/// The console output of a VM: a bounded history with absolute byte offsets (offset 0 is the
/// first byte the guest ever wrote, on whichever host), an optional live stream, and waiting
/// for new output (console follow).
/// </summary>
public sealed class ConsoleLog : IConsoleSink
{
    private readonly object _lock = new();
    private readonly int _capacity;
    private readonly byte[] _ring;
    private long _end;
    private long _start;
    private TaskCompletionSource? _waiter;

    public ConsoleLog(int capacity = 4 << 20, long startOffset = 0)
    {
        _capacity = capacity;
        _ring = new byte[capacity];
        _start = _end = startOffset;
    }

    /// <summary>Also write every byte here as it arrives (the CLI's stdout).</summary>
    public Stream? Echo { get; set; }

    /// <summary>Absolute offset just past the last byte written.</summary>
    public long End
    {
        get
        {
            lock (_lock)
            {
                return _end;
            }
        }
    }

    public void Write(byte b)
    {
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            _ring[_end % _capacity] = b;
            _end++;
            if (_end - _start > _capacity)
            {
                _start = _end - _capacity;
            }

            if (_waiter is not null && (b == (byte)'\n' || _end % 256 == 0))
            {
                wake = _waiter;
                _waiter = null;
            }
        }

        Stream? echo = Echo;
        if (echo is not null)
        {
            echo.WriteByte(b);
            if (b == (byte)'\n')
            {
                echo.Flush();
            }
        }

        wake?.TrySetResult();
    }

    /// <summary>Moves the log to continue at <paramref name="offset"/> (a migrated VM's console position).</summary>
    public void ContinueAt(long offset)
    {
        lock (_lock)
        {
            _start = _end = offset;
        }
    }

    /// <summary>Bytes from <paramref name="from"/> (clamped to what is retained) to the end; returns the offset they start at.</summary>
    public (long Offset, byte[] Bytes) Read(long from)
    {
        lock (_lock)
        {
            long begin = Math.Clamp(from, _start, _end);
            var bytes = new byte[_end - begin];
            for (long i = begin; i < _end; i++)
            {
                bytes[i - begin] = _ring[i % _capacity];
            }

            return (begin, bytes);
        }
    }

    /// <summary>Completes when output past <paramref name="offset"/> exists (or a line ends), or on cancellation.</summary>
    public async Task WaitForOutputAsync(long offset, CancellationToken cancellation)
    {
        Task wait;
        lock (_lock)
        {
            if (_end > offset)
            {
                return;
            }

            _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            wait = _waiter.Task;
        }

        // Bytes without a newline wake no one at once: poll as well so partial lines appear.
        await Task.WhenAny(wait, Task.Delay(200, cancellation)).ConfigureAwait(false);
        cancellation.ThrowIfCancellationRequested();
    }

    public void Flush() => Echo?.Flush();
}
