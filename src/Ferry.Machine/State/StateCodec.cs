using System.Buffers.Binary;
using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Machine.State;

/// <summary>
/// Binary encoding of <see cref="MachineState"/>, shared by snapshots and the migration
/// stream. Little-endian. A list of tagged, versioned sections, one per component:
///
///   u16 format version (2) | u16 section count
///   section count x { 4 ASCII bytes tag | u16 section version | u32 length | payload }
///
/// in the order CONF (configuration), HART, then the board's devices
/// (<see cref="VirtMachine.DeviceSections"/>: CLCK, CLNT, UART, PLIC). The decoder treats its
/// input as hostile: the whole state and each section have a size limit checked before
/// anything is read; an unknown tag, a version other than the one this Ferry reads, a
/// duplicate or missing section, a truncated or overlong payload, and any field a component
/// cannot hold are refused (InvalidDataException with a one-line reason).
/// </summary>
public static class StateCodec
{
    /// <summary>1: one fixed record; 2: tagged sections.</summary>
    public const ushort FormatVersion = 2;

    public const int MaxEncodedSize = 512 << 10;

    public const int MaxSections = 64;

    private const int SectionHeaderSize = 10;

    /// <summary>The machine's configuration (memory size, clock mode, idle policy).</summary>
    public static readonly StateSection<MachineConfig> ConfigSection = new("CONF", 1, 64, WriteConfig, ReadConfig);

    /// <summary>
    /// The hart: registers, CSRs, PMP, counters. A field added to HartState (the FP registers and
    /// fcsr, say) is written at the end of <see cref="WriteHart"/>, read at the end of
    /// <see cref="ReadHart"/>, and this section's version goes up by one; nothing else changes.
    /// </summary>
    /// <remarks>Version 2: the FP registers and fcsr follow the PMP registers (RV64GC).</remarks>
    public static readonly StateSection<HartState> HartSection = new("HART", 2, 4096, WriteHart, ReadHart);

    /// <summary>Every section of the machine state, in encoding order.</summary>
    public static IReadOnlyList<StateSection> Sections { get; } = [ConfigSection, HartSection, .. VirtMachine.DeviceSections];

    public static byte[] Encode(MachineState s)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms))
        {
            w.Write(FormatVersion);
            w.Write((ushort)Sections.Count);
            foreach (StateSection section in Sections)
            {
                object state = section == ConfigSection ? s.Config : section == HartSection ? s.Hart : DeviceState(s, section);
                w.Write(Encoding.ASCII.GetBytes(section.Tag));
                w.Write(section.Version);
                long lengthAt = ms.Position;
                w.Write(0u);
                section.WriteObject(w, state);
                w.Flush();
                long end = ms.Position;
                if (end - lengthAt - 4 > section.MaxLength)
                {
                    throw new InvalidOperationException($"section '{section.Tag}' encodes to {end - lengthAt - 4} bytes, over its {section.MaxLength} byte limit");
                }

                ms.Position = lengthAt;
                w.Write((uint)(end - lengthAt - 4));
                w.Flush();
                ms.Position = end;
            }
        }

        return ms.ToArray();
    }

    public static MachineState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxEncodedSize)
        {
            throw new InvalidDataException($"machine state of {data.Length} bytes exceeds the {MaxEncodedSize} byte limit");
        }

        if (data.Length < 4)
        {
            throw new InvalidDataException("machine state is truncated");
        }

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(data);
        if (version != FormatVersion)
        {
            throw new InvalidDataException($"machine state format version {version} is not supported (this Ferry reads version {FormatVersion})");
        }

        int count = BinaryPrimitives.ReadUInt16LittleEndian(data[2..]);
        if (count > MaxSections)
        {
            throw new InvalidDataException($"machine state declares {count} sections, more than the {MaxSections} allowed");
        }

        var found = new object?[Sections.Count];
        ReadOnlySpan<byte> rest = data[4..];
        for (int i = 0; i < count; i++)
        {
            if (rest.Length < SectionHeaderSize)
            {
                throw new InvalidDataException($"machine state is truncated in the header of section {i + 1} of {count}");
            }

            string tag = TagText(rest[..4]);
            ushort sectionVersion = BinaryPrimitives.ReadUInt16LittleEndian(rest[4..]);
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(rest[6..]);
            rest = rest[SectionHeaderSize..];
            int index = IndexOf(tag);
            if (index < 0)
            {
                throw new InvalidDataException($"machine state has an unknown section '{tag}'");
            }

            StateSection section = Sections[index];
            if (found[index] is not null)
            {
                throw new InvalidDataException($"machine state has a duplicate section '{tag}'");
            }

            if (sectionVersion != section.Version)
            {
                throw new InvalidDataException($"section '{tag}' version {sectionVersion} is not supported (this Ferry reads version {section.Version})");
            }

            if (length > (uint)section.MaxLength)
            {
                throw new InvalidDataException($"section '{tag}' is {length} bytes, over its {section.MaxLength} byte limit");
            }

            if (length > (uint)rest.Length)
            {
                throw new InvalidDataException($"section '{tag}' is truncated ({rest.Length} of {length} bytes)");
            }

            found[index] = ReadSection(section, rest[..(int)length]);
            rest = rest[(int)length..];
        }

        if (!rest.IsEmpty)
        {
            throw new InvalidDataException($"machine state has {rest.Length} unexpected trailing bytes");
        }

        for (int i = 0; i < found.Length; i++)
        {
            if (found[i] is null)
            {
                throw new InvalidDataException($"machine state has no '{Sections[i].Tag}' section");
            }
        }

        return new MachineState((MachineConfig)found[0]!, (HartState)found[1]!, found[2..].Select(d => d!).ToArray());
    }

    private static object DeviceState(MachineState s, StateSection section)
    {
        foreach (object d in s.Devices)
        {
            if (d.GetType() == section.StateType)
            {
                return d;
            }
        }

        throw new ArgumentException($"machine state holds no {section.StateType.Name} for section '{section.Tag}'", nameof(s));
    }

    private static object ReadSection(StateSection section, ReadOnlySpan<byte> payload)
    {
        using var ms = new MemoryStream(payload.ToArray(), writable: false);
        using var r = new BinaryReader(ms);
        object state;
        try
        {
            state = section.ReadObject(r);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"section '{section.Tag}' is truncated");
        }

        if (ms.Position != ms.Length)
        {
            throw new InvalidDataException($"section '{section.Tag}' has {ms.Length - ms.Position} unexpected trailing bytes");
        }

        return state;
    }

    private static int IndexOf(string tag)
    {
        for (int i = 0; i < Sections.Count; i++)
        {
            if (Sections[i].Tag == tag)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>The tag as text for messages (non-printable bytes as \xNN).</summary>
    private static string TagText(ReadOnlySpan<byte> tag)
    {
        var sb = new StringBuilder(4);
        foreach (byte b in tag)
        {
            sb.Append(b is >= 0x20 and < 0x7F && b != (byte)'\'' ? ((char)b).ToString() : $"\\x{b:x2}");
        }

        return sb.ToString();
    }

    private static void WriteConfig(BinaryWriter w, MachineConfig c)
    {
        w.Write(c.MemorySize);
        w.Write(c.Icount);
        w.Write(c.IdleSleep);
    }

    private static MachineConfig ReadConfig(BinaryReader r) => new() { MemorySize = r.ReadUInt64(), Icount = r.ReadBoolean(), IdleSleep = r.ReadBoolean() };

    private static void WriteHart(BinaryWriter w, HartState h)
    {
        w.Write(h.Pc);
        foreach (ulong x in h.X)
        {
            w.Write(x);
        }

        w.Write((byte)h.Privilege);
        w.Write(h.InstructionsRetired);
        w.Write(h.CounterOffset);
        w.Write(h.VirtualClock);
        w.Write(h.WaitingForInterrupt);
        w.Write(h.Reservation);
        foreach (ulong v in CsrValues(h))
        {
            w.Write(v);
        }

        foreach (ulong v in h.PmpCfg)
        {
            w.Write(v);
        }

        foreach (ulong v in h.PmpAddr)
        {
            w.Write(v);
        }

        foreach (ulong v in h.F)
        {
            w.Write(v);
        }

        w.Write(h.Fcsr);
    }

    private static HartState ReadHart(BinaryReader r)
    {
        ulong pc = r.ReadUInt64();
        var xs = new ulong[32];
        for (int i = 0; i < 32; i++)
        {
            xs[i] = r.ReadUInt64();
        }

        if (xs[0] != 0)
        {
            throw new InvalidDataException("machine state: x0 is not 0"); // found by StateLoaderFuzzTests
        }

        byte priv = r.ReadByte();
        if (priv is not (0 or 1 or 3))
        {
            throw new InvalidDataException($"machine state: privilege {priv} is not U, S or M");
        }

        ulong instret = r.ReadUInt64();
        ulong counterOffset = r.ReadUInt64();
        ulong vclock = r.ReadUInt64();
        bool wfi = r.ReadBoolean();
        ulong reservation = r.ReadUInt64();
        var csr = new ulong[CsrCount];
        for (int i = 0; i < CsrCount; i++)
        {
            csr[i] = r.ReadUInt64();
        }

        ulong[] pmpCfg = [r.ReadUInt64(), r.ReadUInt64()];
        var pmpAddr = new ulong[16];
        for (int i = 0; i < 16; i++)
        {
            pmpAddr[i] = r.ReadUInt64();
        }

        var fs = new ulong[32];
        for (int i = 0; i < 32; i++)
        {
            fs[i] = r.ReadUInt64();
        }

        uint fcsr = r.ReadUInt32();
        if (fcsr > 0xFF)
        {
            throw new InvalidDataException($"machine state: fcsr 0x{fcsr:x} has bits above the 8 of frm and fflags");
        }

        var hart = new HartState
        {
            Pc = pc,
            X = xs,
            Privilege = (PrivilegeMode)priv,
            InstructionsRetired = instret,
            CounterOffset = counterOffset,
            VirtualClock = vclock,
            WaitingForInterrupt = wfi,
            Reservation = reservation,
            Mstatus = csr[0], Medeleg = csr[1], Mideleg = csr[2], Mie = csr[3], MipSoftware = csr[4],
            Mtvec = csr[5], Mscratch = csr[6], Mepc = csr[7], Mcause = csr[8], Mtval = csr[9],
            Mcounteren = csr[10], Menvcfg = csr[11], Mcountinhibit = csr[12], Stvec = csr[13],
            Sscratch = csr[14], Sepc = csr[15], Scause = csr[16], Stval = csr[17], Scounteren = csr[18],
            Senvcfg = csr[19], Satp = csr[20],
            PmpCfg = pmpCfg,
            PmpAddr = pmpAddr,
            F = fs,
            Fcsr = fcsr,
        };

        return hart;
    }

    private const int CsrCount = 21;

    private static ulong[] CsrValues(HartState h) =>
    [
        h.Mstatus, h.Medeleg, h.Mideleg, h.Mie, h.MipSoftware, h.Mtvec, h.Mscratch, h.Mepc, h.Mcause, h.Mtval,
        h.Mcounteren, h.Menvcfg, h.Mcountinhibit, h.Stvec, h.Sscratch, h.Sepc, h.Scause, h.Stval, h.Scounteren,
        h.Senvcfg, h.Satp,
    ];
}
