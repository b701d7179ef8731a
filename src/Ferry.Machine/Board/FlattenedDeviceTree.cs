using System.Buffers.Binary;
using System.Text;

namespace Ferry.Machine.Board;

/// <summary>
/// A device-tree node under construction: properties in insertion order, then children.
/// Property values are stored already encoded (big-endian cells, NUL-terminated strings).
/// </summary>
public sealed class DeviceTreeNode
{
    private readonly List<(string Name, byte[] Value)> _properties = [];
    private readonly List<DeviceTreeNode> _children = [];

    public DeviceTreeNode(string name)
    {
        if (name.Contains('/', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{name}' is not a node name", nameof(name));
        }

        Name = name;
    }

    /// <summary>The node name with its unit address ("serial@10000000"); empty for the root.</summary>
    public string Name { get; }

    public IReadOnlyList<(string Name, byte[] Value)> Properties => _properties;

    public IReadOnlyList<DeviceTreeNode> Children => _children;

    /// <summary>Adds and returns a child node.</summary>
    public DeviceTreeNode AddChild(string name)
    {
        var child = new DeviceTreeNode(name);
        _children.Add(child);
        return child;
    }

    /// <summary>A property with no value (a flag such as "interrupt-controller", "ranges").</summary>
    public DeviceTreeNode Empty(string name) => Add(name, []);

    /// <summary>32-bit cells.</summary>
    public DeviceTreeNode Cells(string name, params uint[] cells)
    {
        var value = new byte[4 * cells.Length];
        for (int i = 0; i < cells.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(value.AsSpan(4 * i), cells[i]);
        }

        return Add(name, value);
    }

    /// <summary>64-bit values as pairs of cells (addresses and sizes with #address-cells = #size-cells = 2).</summary>
    public DeviceTreeNode Cells64(string name, params ulong[] values)
    {
        var value = new byte[8 * values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(value.AsSpan(8 * i), values[i]);
        }

        return Add(name, value);
    }

    /// <summary>One string, or a string list (each NUL-terminated).</summary>
    public DeviceTreeNode Strings(string name, params string[] values)
    {
        var bytes = new List<byte>();
        foreach (string s in values)
        {
            if (s.Contains('\0', StringComparison.Ordinal))
            {
                throw new ArgumentException($"property {name}: a string may not contain NUL", nameof(values));
            }

            bytes.AddRange(Encoding.UTF8.GetBytes(s));
            bytes.Add(0);
        }

        return Add(name, [.. bytes]);
    }

    public DeviceTreeNode Bytes(string name, ReadOnlySpan<byte> value) => Add(name, value.ToArray());

    private DeviceTreeNode Add(string name, byte[] value)
    {
        if (name.Length == 0 || name.Contains('\0', StringComparison.Ordinal) || _properties.Exists(p => p.Name == name))
        {
            throw new ArgumentException($"node '{Name}': property '{name}' is empty, contains NUL or is already set", nameof(name));
        }

        _properties.Add((name, value));
        return this;
    }
}

/// <summary>
/// The flattened device tree (devicetree specification v0.4, chapter 5), version 17 (last
/// compatible 16), all big-endian:
///
///   header (40 bytes)   magic 0xd00dfeed, totalsize, off_dt_struct, off_dt_strings,
///                       off_mem_rsvmap, version, last_comp_version, boot_cpuid_phys,
///                       size_dt_strings, size_dt_struct
///   memory reservation block (8-byte aligned): (u64 address, u64 size)*, then (0, 0)
///   structure block: FDT_BEGIN_NODE name | FDT_PROP len nameoff value | FDT_END_NODE | FDT_END,
///                    each token and value padded to 4 bytes
///   strings block: property names, NUL-terminated, each stored once
/// </summary>
public static class FlattenedDeviceTree
{
    public const uint Magic = 0xD00D_FEED;
    public const uint Version = 17, LastCompatibleVersion = 16;
    private const uint BeginNode = 1, EndNode = 2, Prop = 3, End = 9;
    private const int HeaderSize = 40;

    public static byte[] Write(DeviceTreeNode root, IReadOnlyList<(ulong Address, ulong Size)>? reservations = null, uint bootCpu = 0)
    {
        if (root.Name.Length != 0)
        {
            throw new ArgumentException("the root node has an empty name", nameof(root));
        }

        var strings = new MemoryStream();
        var offsets = new Dictionary<string, int>(StringComparer.Ordinal);
        var structure = new MemoryStream();
        WriteNode(root, structure, strings, offsets);
        WriteU32(structure, End);

        reservations ??= [];
        int rsvOffset = HeaderSize; // already 8-byte aligned
        int rsvSize = 16 * (reservations.Count + 1);
        int structOffset = rsvOffset + rsvSize;
        int stringsOffset = structOffset + (int)structure.Length;
        int total = stringsOffset + (int)strings.Length;

        var fdt = new byte[total];
        Span<byte> h = fdt;
        BinaryPrimitives.WriteUInt32BigEndian(h, Magic);
        BinaryPrimitives.WriteUInt32BigEndian(h[4..], (uint)total);
        BinaryPrimitives.WriteUInt32BigEndian(h[8..], (uint)structOffset);
        BinaryPrimitives.WriteUInt32BigEndian(h[12..], (uint)stringsOffset);
        BinaryPrimitives.WriteUInt32BigEndian(h[16..], (uint)rsvOffset);
        BinaryPrimitives.WriteUInt32BigEndian(h[20..], Version);
        BinaryPrimitives.WriteUInt32BigEndian(h[24..], LastCompatibleVersion);
        BinaryPrimitives.WriteUInt32BigEndian(h[28..], bootCpu);
        BinaryPrimitives.WriteUInt32BigEndian(h[32..], (uint)strings.Length);
        BinaryPrimitives.WriteUInt32BigEndian(h[36..], (uint)structure.Length);
        for (int i = 0; i < reservations.Count; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(h[(rsvOffset + (16 * i))..], reservations[i].Address);
            BinaryPrimitives.WriteUInt64BigEndian(h[(rsvOffset + (16 * i) + 8)..], reservations[i].Size);
        }

        structure.GetBuffer().AsSpan(0, (int)structure.Length).CopyTo(h[structOffset..]);
        strings.GetBuffer().AsSpan(0, (int)strings.Length).CopyTo(h[stringsOffset..]);
        return fdt;
    }

    private static void WriteNode(DeviceTreeNode node, MemoryStream s, MemoryStream strings, Dictionary<string, int> offsets)
    {
        WriteU32(s, BeginNode);
        s.Write(Encoding.UTF8.GetBytes(node.Name));
        s.WriteByte(0);
        Pad(s);
        foreach ((string name, byte[] value) in node.Properties)
        {
            if (!offsets.TryGetValue(name, out int offset))
            {
                offset = (int)strings.Length;
                offsets.Add(name, offset);
                strings.Write(Encoding.UTF8.GetBytes(name));
                strings.WriteByte(0);
            }

            WriteU32(s, Prop);
            WriteU32(s, (uint)value.Length);
            WriteU32(s, (uint)offset);
            s.Write(value);
            Pad(s);
        }

        foreach (DeviceTreeNode child in node.Children)
        {
            WriteNode(child, s, strings, offsets);
        }

        WriteU32(s, EndNode);
    }

    private static void WriteU32(MemoryStream s, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        s.Write(b);
    }

    private static void Pad(MemoryStream s)
    {
        while ((s.Length & 3) != 0)
        {
            s.WriteByte(0);
        }
    }
}
