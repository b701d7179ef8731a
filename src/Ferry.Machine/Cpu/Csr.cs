namespace Ferry.Machine.Cpu;

/// <summary>CSR numbers (privileged spec, table 2.2-2.5) used by the hart.</summary>
public static class Csr
{
    public const int Fflags = 0x001, Frm = 0x002, Fcsr = 0x003;
    public const int Sstatus = 0x100, Sie = 0x104, Stvec = 0x105, Scounteren = 0x106, Senvcfg = 0x10A;
    public const int Sscratch = 0x140, Sepc = 0x141, Scause = 0x142, Stval = 0x143, Sip = 0x144;
    public const int Satp = 0x180;
    public const int Mstatus = 0x300, Misa = 0x301, Medeleg = 0x302, Mideleg = 0x303, Mie = 0x304, Mtvec = 0x305, Mcounteren = 0x306;
    public const int Menvcfg = 0x30A, Mcountinhibit = 0x320;
    public const int Mscratch = 0x340, Mepc = 0x341, Mcause = 0x342, Mtval = 0x343, Mip = 0x344;
    public const int Pmpcfg0 = 0x3A0, Pmpaddr0 = 0x3B0;
    public const int Mcycle = 0xB00, Minstret = 0xB02, Mhpmcounter3 = 0xB03, Mhpmcounter31 = 0xB1F;
    public const int Mhpmevent3 = 0x323, Mhpmevent31 = 0x33F;
    public const int Cycle = 0xC00, Time = 0xC01, Instret = 0xC02, Hpmcounter3 = 0xC03, Hpmcounter31 = 0xC1F;
    public const int Mvendorid = 0xF11, Marchid = 0xF12, Mimpid = 0xF13, Mhartid = 0xF14, Mconfigptr = 0xF15;
}

/// <summary>mstatus fields (RV64).</summary>
public static class MstatusBits
{
    public const ulong SIE = 1UL << 1, MIE = 1UL << 3, SPIE = 1UL << 5, UBE = 1UL << 6, MPIE = 1UL << 7, SPP = 1UL << 8;
    public const int MppShift = 11;
    public const ulong MPP = 3UL << MppShift;
    public const ulong FS = 3UL << 13, XS = 3UL << 15, VS = 3UL << 9;
    public const ulong MPRV = 1UL << 17, SUM = 1UL << 18, MXR = 1UL << 19, TVM = 1UL << 20, TW = 1UL << 21, TSR = 1UL << 22;
    public const ulong UXL = 3UL << 32, SXL = 3UL << 34, SD = 1UL << 63;

    /// <summary>UXL = SXL = 2 (64-bit), read-only.</summary>
    public const ulong XlFields = (2UL << 32) | (2UL << 34);

    public const ulong Writable = SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR;
    public const ulong SstatusMask = SIE | SPIE | UBE | SPP | VS | FS | XS | SUM | MXR | UXL | SD;
}

/// <summary>Interrupt numbers and the mip/mie bits.</summary>
public static class Irq
{
    public const int SSI = 1, MSI = 3, STI = 5, MTI = 7, SEI = 9, MEI = 11;
    public const ulong SSIP = 1UL << SSI, MSIP = 1UL << MSI, STIP = 1UL << STI, MTIP = 1UL << MTI, SEIP = 1UL << SEI, MEIP = 1UL << MEI;
    public const ulong SupervisorBits = SSIP | STIP | SEIP;
    public const ulong All = SupervisorBits | MSIP | MTIP | MEIP;
}

/// <summary>Synchronous exception causes (mcause with interrupt bit clear).</summary>
public enum TrapCause : byte
{
    InstructionAddressMisaligned = 0,
    InstructionAccessFault = 1,
    IllegalInstruction = 2,
    Breakpoint = 3,
    LoadAddressMisaligned = 4,
    LoadAccessFault = 5,
    StoreAddressMisaligned = 6,
    StoreAccessFault = 7,
    EcallFromU = 8,
    EcallFromS = 9,
    EcallFromM = 11,
    InstructionPageFault = 12,
    LoadPageFault = 13,
    StorePageFault = 15,
}

public enum PrivilegeMode : byte
{
    User = 0,
    Supervisor = 1,
    Machine = 3,
}
