using Ferry.Machine.Memory;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// A page sent again as only what changed since the receiver's copy (as QEMU's XBZRLE): a
/// sequence of (unchanged run, changed run, the changed run's new bytes), the run lengths as
/// unsigned LEB128, covering the page from its start; bytes after the last changed run are
/// unchanged. A run of fewer than <see cref="MinUnchangedRun"/> equal bytes inside a change is
/// sent as changed (a run's header costs as much).
/// </summary>
public static class PageDelta
{
    private const int PageSize = GuestMemory.PageSize;
    private const int MinUnchangedRun = 4;

    /// <summary>Largest delta worth sending: beyond this the page goes whole (raw or LZ4).</summary>
    public const int MaxLength = PageSize / 2;

    /// <summary>Encodes <paramref name="current"/> against <paramref name="previous"/>; the length, or -1 when the delta is over <see cref="MaxLength"/>.</summary>
    public static int Encode(ReadOnlySpan<byte> previous, ReadOnlySpan<byte> current, Span<byte> output)
    {
        int i = 0, o = 0;
        while (i < PageSize)
        {
            int same = previous[i..].CommonPrefixLength(current[i..]);
            if (i + same == PageSize)
            {
                break;
            }

            int start = i + same, end = start;
            while (end < PageSize)
            {
                if (previous[end] != current[end])
                {
                    end++;
                    continue;
                }

                int equal = previous[end..].CommonPrefixLength(current[end..]);
                if (equal >= MinUnchangedRun || end + equal == PageSize)
                {
                    break;
                }

                end += equal;
            }

            int length = end - start;
            if (o + 6 + length > MaxLength)
            {
                return -1;
            }

            o += WriteUleb(output[o..], same);
            o += WriteUleb(output[o..], length);
            current[start..end].CopyTo(output[o..]);
            o += length;
            i = end;
        }

        return o;
    }

    /// <summary>Applies a delta to <paramref name="page"/>, which holds the receiver's copy; throws InvalidDataException on anything malformed.</summary>
    public static void Apply(ReadOnlySpan<byte> delta, Span<byte> page)
    {
        int i = 0, r = 0;
        while (r < delta.Length)
        {
            int same = ReadUleb(delta, ref r);
            int length = ReadUleb(delta, ref r);
            if (length == 0 || same > PageSize - i || length > PageSize - i - same || length > delta.Length - r)
            {
                throw new InvalidDataException("a page delta runs past its page or its data");
            }

            i += same;
            delta.Slice(r, length).CopyTo(page[i..]);
            r += length;
            i += length;
        }
    }

    private static int WriteUleb(Span<byte> output, int value)
    {
        int n = 0;
        do
        {
            byte b = (byte)(value & 0x7F);
            value >>= 7;
            output[n++] = value != 0 ? (byte)(b | 0x80) : b;
        }
        while (value != 0);
        return n;
    }

    private static int ReadUleb(ReadOnlySpan<byte> input, ref int r)
    {
        int value = 0;
        for (int shift = 0; shift <= 14; shift += 7)
        {
            if (r >= input.Length)
            {
                throw new InvalidDataException("a page delta ends inside a run length");
            }

            byte b = input[r++];
            value |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw new InvalidDataException("a page delta's run length is too long");
    }
}

/// <summary>
/// The content last sent of recently sent pages, for <see cref="PageDelta"/>: direct-mapped
/// (slot = page mod slots), so a page's entry is replaced by a later page of the same slot. Its
/// memory is allocated once, with the migration.
/// </summary>
public sealed class SentPageCache
{
    private readonly int[] _tags;
    private readonly byte[] _pages;

    public SentPageCache(long bytes)
    {
        int slots = (int)Math.Clamp(bytes / GuestMemory.PageSize, 1, int.MaxValue / GuestMemory.PageSize);
        _tags = new int[slots];
        Array.Fill(_tags, -1);
        _pages = new byte[(long)slots * GuestMemory.PageSize];
    }

    /// <summary>The content last sent of <paramref name="page"/>, or empty if not cached.</summary>
    public ReadOnlySpan<byte> Get(int page)
    {
        int slot = page % _tags.Length;
        return _tags[slot] == page ? _pages.AsSpan(slot * GuestMemory.PageSize, GuestMemory.PageSize) : default;
    }

    public void Store(int page, ReadOnlySpan<byte> content)
    {
        int slot = page % _tags.Length;
        _tags[slot] = page;
        content.CopyTo(_pages.AsSpan(slot * GuestMemory.PageSize, GuestMemory.PageSize));
    }
}
