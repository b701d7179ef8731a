using System.Buffers.Binary;
using System.IO.Hashing;
using Ferry.Machine.Board;
using Ferry.Machine.Devices;
using Ferry.Machine.Memory;

namespace Ferry.Machine.State;

/// <summary>
/// A digest of the whole machine (XxHash128): CPU and device state, then the index and content
/// of every non-zero RAM page. Zero pages are skipped so that the digest depends on content
/// only, not on which pages happen to be populated; the real-time clock offset is excluded.
/// Two machines with equal digests are in the same architectural state.
/// </summary>
public static class StateDigest
{
    public static string Compute(VirtMachine machine)
    {
        MachineState state = machine.SaveState();
        // Host policy (idle sleep) and, in real-time mode, the host clock are not guest state.
        // Everything else is: the encoding holds every section (CONF, HART and each device's).
        state = state with { Config = state.Config with { IdleSleep = false } };
        if (!state.Config.Icount)
        {
            state = state.WithDevice(new ClockState(0, 0));
        }

        var hash = new XxHash128();
        hash.Append(StateCodec.Encode(state));
        hash.Append(MemoryDigest(machine.Memory));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Digest of RAM content alone (the migration's completion check).</summary>
    public static byte[] MemoryDigest(GuestMemory memory)
    {
        var hash = new XxHash128();
        Span<byte> index = stackalloc byte[4];
        foreach (int page in memory.Populated.EnumerateSet())
        {
            ReadOnlySpan<byte> content = memory.Page(page);
            if (!content.ContainsAnyExcept((byte)0))
            {
                continue;
            }

            BinaryPrimitives.WriteInt32LittleEndian(index, page);
            hash.Append(index);
            hash.Append(content);
        }

        return hash.GetHashAndReset();
    }
}
