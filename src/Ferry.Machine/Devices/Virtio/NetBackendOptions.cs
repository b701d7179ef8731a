using System.Globalization;
using System.IO.Hashing;
using System.Text;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// `--net tap[,ifname=NAME][,bridge=BR][,mac=52:54:00:xx:xx:xx]`: a TAP interface (named by the
/// kernel when no name is given) enslaved to a bridge (ferry0 by default), and the guest's MAC
/// (fixed per VM: derived from its name unless given, and it crosses with the VM).
/// </summary>
public sealed record NetBackendOptions
{
    public const string DefaultBridge = "ferry0";

    public string? Ifname { get; init; }

    /// <summary>The bridge the TAP joins; empty for none.</summary>
    public string Bridge { get; init; } = DefaultBridge;

    /// <summary>The guest's MAC address, 6 bytes, or null to derive it from the VM's name.</summary>
    public byte[]? Mac { get; init; }

    /// <summary>Parses the option's text; throws <see cref="FormatException"/> with a one-line reason.</summary>
    public static NetBackendOptions Parse(string text)
    {
        string[] parts = text.Split(',');
        if (parts[0] != "tap")
        {
            throw new FormatException($"--net '{text}': the backend must be 'tap' (tap[,ifname=NAME][,bridge=BR][,mac=52:54:00:12:34:56])");
        }

        var o = new NetBackendOptions();
        foreach (string part in parts.Skip(1))
        {
            int eq = part.IndexOf('=');
            string key = eq < 0 ? part : part[..eq], value = eq < 0 ? "" : part[(eq + 1)..];
            o = key switch
            {
                "ifname" when value.Length is > 0 and < 16 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') => o with { Ifname = value },
                "bridge" when value.Length < 16 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') => o with { Bridge = value },
                "mac" => o with { Mac = ParseMac(value) },
                _ => throw new FormatException($"--net '{text}': bad option '{part}' (ifname and bridge are interface names under 16 characters, mac is six hex bytes)"),
            };
        }

        return o;
    }

    /// <summary>The MAC this VM uses: the given one, or 52:54:00 (QEMU's prefix) and three bytes of a hash of the VM's name.</summary>
    public byte[] MacFor(string vmName)
    {
        if (Mac is { } mac)
        {
            return mac;
        }

        ulong h = XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(vmName));
        return [0x52, 0x54, 0x00, (byte)h, (byte)(h >> 8), (byte)(h >> 16)];
    }

    public static byte[] ParseMac(string text)
    {
        string[] bytes = text.Split(':');
        var mac = new byte[6];
        if (bytes.Length != 6 || !bytes.Select((b, i) => byte.TryParse(b, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out mac[i]) && b.Length == 2).All(ok => ok))
        {
            throw new FormatException($"'{text}' is not a MAC address (six hex bytes: 52:54:00:12:34:56)");
        }

        if ((mac[0] & 1) != 0)
        {
            throw new FormatException($"'{text}' is a multicast address, not a card's");
        }

        return mac;
    }

    public static string FormatMac(ReadOnlySpan<byte> mac) => string.Join(':', mac.ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    public override string ToString() =>
        "tap" + (Ifname is null ? "" : $",ifname={Ifname}") + (Bridge == DefaultBridge ? "" : $",bridge={Bridge}") + (Mac is null ? "" : $",mac={FormatMac(Mac)}");
}
