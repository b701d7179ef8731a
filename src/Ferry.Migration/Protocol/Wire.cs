using System.Buffers.Binary;
using System.Text;

namespace Ferry.Migration.Protocol;

/// <summary>A protocol violation by the peer: the migration fails with this one-line reason.</summary>
public sealed class ProtocolException(string message) : Exception(message);

/// <summary>Little-endian writer over a caller-owned buffer (no allocation).</summary>
public ref struct WireWriter
{
    private readonly Span<byte> _buffer;

    public WireWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        Position = 0;
    }

    public int Position { get; private set; }

    public readonly Span<byte> Remaining => _buffer[Position..];

    public void U8(byte v) => _buffer[Position++] = v;

    public void U16(ushort v)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer[Position..], v);
        Position += 2;
    }

    public void U32(uint v)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer[Position..], v);
        Position += 4;
    }

    public void U64(ulong v)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer[Position..], v);
        Position += 8;
    }

    public void Bytes(ReadOnlySpan<byte> v)
    {
        v.CopyTo(_buffer[Position..]);
        Position += v.Length;
    }

    /// <summary>u16 length + UTF-8.</summary>
    public void String(string v)
    {
        int n = Encoding.UTF8.GetBytes(v, _buffer[(Position + 2)..]);
        U16((ushort)n);
        Position += n;
    }

    public void Advance(int n) => Position += n;
}

/// <summary>Little-endian reader that treats its input as hostile: every read is bounds-checked.</summary>
public ref struct WireReader
{
    private readonly ReadOnlySpan<byte> _data;

    public WireReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        Position = 0;
    }

    public int Position { get; private set; }

    public readonly int Remaining => _data.Length - Position;

    public byte U8()
    {
        Need(1);
        return _data[Position++];
    }

    public ushort U16()
    {
        Need(2);
        ushort v = BinaryPrimitives.ReadUInt16LittleEndian(_data[Position..]);
        Position += 2;
        return v;
    }

    public uint U32()
    {
        Need(4);
        uint v = BinaryPrimitives.ReadUInt32LittleEndian(_data[Position..]);
        Position += 4;
        return v;
    }

    public ulong U64()
    {
        Need(8);
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(_data[Position..]);
        Position += 8;
        return v;
    }

    public ReadOnlySpan<byte> Bytes(int n)
    {
        if (n < 0)
        {
            throw new ProtocolException("negative length");
        }

        Need(n);
        ReadOnlySpan<byte> v = _data.Slice(Position, n);
        Position += n;
        return v;
    }

    public string String(int maxBytes)
    {
        int n = U16();
        if (n > maxBytes)
        {
            throw new ProtocolException($"string of {n} bytes exceeds the {maxBytes} byte limit");
        }

        return Encoding.UTF8.GetString(Bytes(n));
    }

    public readonly void End()
    {
        if (Position != _data.Length)
        {
            throw new ProtocolException($"{_data.Length - Position} unexpected trailing bytes in a message");
        }
    }

    private readonly void Need(int n)
    {
        if (n > _data.Length - Position)
        {
            throw new ProtocolException("message is truncated");
        }
    }
}
