using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Devices;

namespace Ferry.Machine.State;

/// <summary>
/// Binary encoding of <see cref="MachineState"/>, shared by snapshots and the migration
/// stream. Little-endian, fixed field order, a format version first. The decoder treats its
/// input as hostile: every length is bounded and every enum checked.
/// </summary>
public static class StateCodec
{
    /// <summary>2: the FP registers and fcsr follow the PMP registers (RV64GC).</summary>
    public const ushort Version = 2;
    public const int MaxEncodedSize = 64 << 10;

    public static byte[] Encode(MachineState s)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms))
        {
            w.Write(Version);
            w.Write(s.Config.MemorySize);
            w.Write(s.Config.Icount);
            w.Write(s.Config.IdleSleep);

            HartState h = s.Hart;
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

            w.Write(s.Clint.MTimeCmp);
            w.Write(s.Clint.Msip);

            UartState u = s.Uart;
            w.Write(u.Ier);
            w.Write(u.Lcr);
            w.Write(u.Mcr);
            w.Write(u.Scr);
            w.Write(u.Fcr);
            w.Write(u.Dll);
            w.Write(u.Dlm);
            w.Write(u.Transmitted);
            w.Write(u.PendingInput.Length);
            w.Write(u.PendingInput);

            w.Write(s.Clock.MTime);
            w.Write(s.Clock.Offset);
        }

        return ms.ToArray();
    }

    public static MachineState Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxEncodedSize)
        {
            throw new InvalidDataException($"machine state of {data.Length} bytes exceeds the {MaxEncodedSize} byte limit");
        }

        try
        {
            using var ms = new MemoryStream(data.ToArray(), writable: false);
            using var r = new BinaryReader(ms);
            ushort version = r.ReadUInt16();
            if (version != Version)
            {
                throw new InvalidDataException($"machine state version {version} is not supported (this Ferry reads version {Version})");
            }

            var config = new MachineConfig { MemorySize = r.ReadUInt64(), Icount = r.ReadBoolean(), IdleSleep = r.ReadBoolean() };
            ulong pc = r.ReadUInt64();
            var xs = new ulong[32];
            for (int i = 0; i < 32; i++)
            {
                xs[i] = r.ReadUInt64();
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

            var clint = new ClintState(r.ReadUInt64(), r.ReadBoolean());
            byte ier = r.ReadByte(), lcr = r.ReadByte(), mcr = r.ReadByte(), scr = r.ReadByte(), fcr = r.ReadByte(), dll = r.ReadByte(), dlm = r.ReadByte();
            ulong transmitted = r.ReadUInt64();
            int pending = r.ReadInt32();
            if (pending < 0 || pending > 4096)
            {
                throw new InvalidDataException($"machine state: {pending} pending UART bytes is out of range");
            }

            var uart = new UartState(ier, lcr, mcr, scr, fcr, dll, dlm, transmitted, r.ReadBytes(pending));
            var clock = new ClockState(r.ReadUInt64(), r.ReadUInt64());
            if (ms.Position != ms.Length)
            {
                throw new InvalidDataException($"machine state has {ms.Length - ms.Position} unexpected trailing bytes");
            }

            return new MachineState(config, hart, clint, uart, clock);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException("machine state is truncated");
        }
    }

    private const int CsrCount = 21;

    private static ulong[] CsrValues(HartState h) =>
    [
        h.Mstatus, h.Medeleg, h.Mideleg, h.Mie, h.MipSoftware, h.Mtvec, h.Mscratch, h.Mepc, h.Mcause, h.Mtval,
        h.Mcounteren, h.Menvcfg, h.Mcountinhibit, h.Stvec, h.Sscratch, h.Sepc, h.Scause, h.Stval, h.Scounteren,
        h.Senvcfg, h.Satp,
    ];
}
