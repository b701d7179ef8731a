using K4os.Compression.LZ4;

namespace Ferry.Machine.State;

/// <summary>How one 4 KiB page is encoded in a snapshot or a migration page batch.</summary>
public enum PageEncoding : byte
{
    /// <summary>All zeros: no payload (a marker).</summary>
    Zero = 0,
    Raw = 1,
    Lz4 = 2,

    /// <summary>Migration streams only: the changed bytes against the receiver's copy (Ferry.Migration's PageDelta); never in a snapshot.</summary>
    Delta = 3,
}

/// <summary>Page compression shared by snapshots and the migration stream (LZ4, raw when it does not pay).</summary>
public static class PageCodec
{
    public const int PageSize = Memory.GuestMemory.PageSize;

    /// <summary>Encodes <paramref name="page"/> into <paramref name="output"/> (at least 4096 bytes); returns the encoding and length.</summary>
    public static (PageEncoding Encoding, int Length) Encode(ReadOnlySpan<byte> page, Span<byte> output, bool compress)
    {
        if (!page.ContainsAnyExcept((byte)0))
        {
            return (PageEncoding.Zero, 0);
        }

        if (compress)
        {
            int n = LZ4Codec.Encode(page, output[..(PageSize - 1)], LZ4Level.L00_FAST);
            if (n > 0 && n < PageSize - 256)
            {
                return (PageEncoding.Lz4, n);
            }
        }

        page.CopyTo(output);
        return (PageEncoding.Raw, PageSize);
    }

    /// <summary>Decodes into a 4096-byte page; throws InvalidDataException on anything malformed.</summary>
    public static void Decode(PageEncoding encoding, ReadOnlySpan<byte> input, Span<byte> page)
    {
        switch (encoding)
        {
            case PageEncoding.Zero when input.IsEmpty:
                page.Clear();
                return;
            case PageEncoding.Raw when input.Length == PageSize:
                input.CopyTo(page);
                return;
            case PageEncoding.Lz4 when input.Length is > 0 and < PageSize:
                if (LZ4Codec.Decode(input, page) != PageSize)
                {
                    throw new InvalidDataException("an LZ4 page does not decode to 4096 bytes");
                }

                return;
            default:
                throw new InvalidDataException($"page encoding {(int)encoding} with {input.Length} bytes is invalid");
        }
    }
}
