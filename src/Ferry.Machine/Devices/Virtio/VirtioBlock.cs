using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// virtio-blk (device ID 2; virtio 1.x 5.2) over a raw image file. One request queue. A request is
/// a 16-byte header (u32 type, u32 reserved, u64 sector), data, and a status byte:
/// IN (0) reads, OUT (1) writes, FLUSH (4) flushes the file to stable storage, GET_ID (8) returns
/// the 20-byte serial; anything else is UNSUPP, a sector range past the end is IOERR.
/// The capacity is the file's size in 512-byte sectors, fixed when the device is created.
///
/// Requests complete synchronously at the queue notify on the machine's thread, with positioned
/// reads and writes straight between the file and guest RAM (no copy): nothing is ever in
/// flight when the machine pauses, and every write has reached the file (the host's page cache,
/// which a destination host opening the same path sees) before the notify returns. Features:
/// VERSION_1, SEG_MAX (126, QEMU's), BLK_SIZE (512), FLUSH, INDIRECT_DESC, RO for a read-only image.
/// </summary>
public sealed class VirtioBlock : VirtioDevice
{
    public const int SectorSize = 512;
    public const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8;
    public const byte StatusOk = 0, StatusIoError = 1, StatusUnsupported = 2;
    public const ulong FeatureSegMax = 1UL << 2, FeatureReadOnly = 1UL << 5, FeatureBlkSize = 1UL << 6, FeatureFlush = 1UL << 9;
    public const uint SegMax = 126;

    private readonly SafeFileHandle _file;
    private readonly byte[] _config = new byte[0x3C];
    private readonly byte[] _id = new byte[20];

    /// <summary>Opens <paramref name="path"/> (which must exist) as the disk; throws <see cref="IOException"/> with a one-line reason.</summary>
    public VirtioBlock(string path, bool readOnly = false)
    {
        Path = path;
        ReadOnly = readOnly;
        try
        {
            _file = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"disk {path}: {e.Message}", e);
        }

        long length = RandomAccess.GetLength(_file);
        Capacity = (ulong)length / SectorSize;
        BinaryPrimitives.WriteUInt64LittleEndian(_config, Capacity);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(12), SegMax);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(20), SectorSize);
        Encoding.ASCII.GetBytes("ferry-" + System.IO.Path.GetFileName(path)).AsSpan(0, Math.Min(20, 6 + System.IO.Path.GetFileName(path).Length)).CopyTo(_id);
    }

    public string Path { get; }

    public bool ReadOnly { get; }

    /// <summary>Disk size in 512-byte sectors.</summary>
    public ulong Capacity { get; }

    /// <summary>Requests served (tests).</summary>
    public long Requests { get; private set; }

    public override string Name => "virtio-blk";

    public override uint DeviceId => 2;

    public override ulong DeviceFeatures =>
        FeatureVersion1 | FeatureIndirectDesc | FeatureSegMax | FeatureBlkSize | FeatureFlush | (ReadOnly ? FeatureReadOnly : 0);

    public override int QueueCount => 1;

    public override int ConfigSize => _config.Length;

    public override byte ReadConfig(int offset) => _config[offset];

    public override void ProcessQueue(int queue, SplitQueue q, GuestDma dma)
    {
        Span<byte> header = stackalloc byte[16];
        while (q.TryPeek(dma))
        {
            if (q.ReadableLength < 16 || q.WritableLength < 1)
            {
                throw new VirtioDriverException($"request of {q.ReadableLength} readable and {q.WritableLength} writable bytes has no header or status");
            }

            q.ReadChain(dma, 0, header);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
            ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
            uint written = 0;
            byte status = type switch
            {
                TypeIn => Transfer(q, dma, sector, toGuest: true, ref written),
                TypeOut => ReadOnly ? StatusIoError : Transfer(q, dma, sector, toGuest: false, ref written),
                TypeFlush => Flush(),
                TypeGetId => GetId(q, dma, ref written),
                _ => StatusUnsupported,
            };

            // The status is the last writable byte.
            q.WriteChain(dma, q.WritableLength - 1, [status]);
            q.Push(dma, written + 1);
            Requests++;
        }
    }

    public override void Dispose()
    {
        _file.Dispose();
        base.Dispose();
    }

    private byte Transfer(SplitQueue q, GuestDma dma, ulong sector, bool toGuest, ref uint written)
    {
        // Data: the readable bytes after the header (OUT) or the writable bytes before the status (IN).
        ulong length = toGuest ? q.WritableLength - 1 : q.ReadableLength - 16;
        if (length % SectorSize != 0 || sector > Capacity || length / SectorSize > Capacity - sector)
        {
            return StatusIoError;
        }

        long position = (long)(sector * SectorSize);
        ulong skip = toGuest ? 0 : 16UL;
        ulong left = length;
        foreach (Segment s in q.Segments)
        {
            if (left == 0)
            {
                break;
            }

            if (s.DeviceWrites != toGuest)
            {
                continue;
            }

            if (skip >= s.Length)
            {
                skip -= s.Length;
                continue;
            }

            ulong segment = Math.Min(s.Length - skip, left);
            ulong at = s.Address + skip;
            skip = 0;
            left -= segment;
            while (segment > 0)
            {
                // At most 1 GiB per call (a segment may be as large as RAM; one pread/pwrite moves less than 2 GiB).
                int n = (int)Math.Min(segment, 1UL << 30);
                try
                {
                    if (toGuest)
                    {
                        Span<byte> target = dma.WriteSpan(at, n);
                        int done = 0, got;
                        while (done < n && (got = RandomAccess.Read(_file, target[done..], position + done)) > 0)
                        {
                            done += got;
                        }

                        target[done..].Clear(); // a file cut shorter than its capacity under us reads as zeros
                    }
                    else
                    {
                        RandomAccess.Write(_file, dma.ReadSpan(at, n), position);
                    }
                }
                catch (IOException)
                {
                    return StatusIoError;
                }

                at += (ulong)n;
                position += n;
                segment -= (ulong)n;
            }
        }

        if (toGuest)
        {
            written = (uint)length;
        }

        return StatusOk;
    }

    private byte Flush()
    {
        try
        {
            RandomAccess.FlushToDisk(_file);
            return StatusOk;
        }
        catch (IOException)
        {
            return StatusIoError;
        }
    }

    private byte GetId(SplitQueue q, GuestDma dma, ref uint written)
    {
        ulong room = q.WritableLength - 1;
        int n = (int)Math.Min(room, (ulong)_id.Length);
        written = (uint)q.WriteChain(dma, 0, _id.AsSpan(0, n));
        return StatusOk;
    }
}
