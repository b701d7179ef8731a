using System.Buffers.Binary;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Tests.Support;

/// <summary>
/// A small VirtMachine for instruction-level tests. Layout (guest physical):
///   0x8000_0000  the program under test (pc starts here)
///   0x8000_3000  the M-mode trap handler: exits through the finisher, leaving mcause/mepc/mtval
///   0x8001_0000  data pages (<see cref="Data"/>)
///   0x8010_0000  page tables (Sv39 tests)
/// </summary>
internal sealed class Rig : IDisposable
{
    public const ulong RamBase = GuestMemory.DefaultBase;
    public const ulong Code = RamBase;
    public const ulong TrapHandler = RamBase + 0x3000;
    public const ulong Data = RamBase + 0x1_0000;
    public const ulong Tables = RamBase + 0x10_0000;

    public Rig(ulong memoryMiB = 4, bool icount = true, bool installTrapExit = true)
    {
        Machine = Engines.Use(new VirtMachine(new MachineConfig { MemorySize = memoryMiB << 20, Icount = icount, IdleSleep = false }), null);
        if (installTrapExit)
        {
            Memory.WritePhysical(TrapHandler, new ProgramBuilder(TrapHandler).Exit().Build());
            SetCsr(Cpu.Csr.Mtvec, TrapHandler);
        }
    }

    public VirtMachine Machine { get; }

    public Hart Hart => Machine.Hart;

    public GuestMemory Memory => Machine.Memory;

    public HartState State => Hart.SaveState();

    public static ProgramBuilder NewProgram(ulong origin = Code) => new(origin);

    /// <summary>Writes the program into RAM and, by default, points the hart at it.</summary>
    public Rig Load(ProgramBuilder program, bool setPc = true)
    {
        Memory.WritePhysical(program.Origin, program.Build());
        if (setPc)
        {
            Hart.Pc = program.Origin;
        }

        return this;
    }

    /// <summary>A run longer than this is stopped: a hart in a trap loop retires nothing and would never reach its limit.</summary>
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(10);

    private Timer? _watchdog;
    private long _runDeadline = long.MaxValue;

    /// <summary>Runs exactly <paramref name="instructions"/> more instructions (unless the guest exits first).</summary>
    public RunOutcome Step(long instructions)
    {
        _watchdog ??= new Timer(_ =>
        {
            if (Environment.TickCount64 > Interlocked.Read(ref _runDeadline))
            {
                Machine.RequestStop();
            }
        }, null, 1000, 1000);
        Interlocked.Exchange(ref _runDeadline, Environment.TickCount64 + (long)Watchdog.TotalMilliseconds);
        try
        {
            RunOutcome outcome = Machine.Run(Hart.InstructionsRetired + (ulong)instructions);
            Assert.True(outcome != RunOutcome.Stopped || Machine.Memory.AbsentPageHandler is not null,
                $"the run was stopped by the {Watchdog.TotalSeconds} s watchdog: pc=0x{Hart.Pc:x}, mcause=0x{State.Mcause:x}");
            return outcome;
        }
        finally
        {
            Interlocked.Exchange(ref _runDeadline, long.MaxValue);
        }
    }

    /// <summary>Runs until the guest writes the finisher; fails if it does not within the budget or exits non-zero.</summary>
    public void RunToExit(long maxInstructions = 100_000)
    {
        RunOutcome outcome = Step(maxInstructions);
        Assert.True(outcome == RunOutcome.GuestExited,
            $"guest did not exit within {maxInstructions} instructions: {outcome}, pc=0x{Hart.Pc:x}, priv={Hart.Privilege}, mcause=0x{State.Mcause:x}, mepc=0x{State.Mepc:x}");
        Assert.Equal(0, Machine.Exit!.Status);
    }

    public ulong X(int register) => Hart.GetRegister(register);

    public Rig SetX(int register, ulong value)
    {
        Hart.SetRegister(register, value);
        return this;
    }

    public ulong Csr(int csr)
    {
        Assert.True(Hart.TryReadCsr(csr, out ulong value), $"CSR 0x{csr:x} is not readable here");
        return value;
    }

    public void SetCsr(int csr, ulong value) => Assert.True(Hart.TryWriteCsr(csr, value), $"CSR 0x{csr:x} is not writable");

    public ulong ReadU64(ulong address)
    {
        Span<byte> b = stackalloc byte[8];
        Memory.ReadPhysical(address, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public uint ReadU32(ulong address)
    {
        Span<byte> b = stackalloc byte[4];
        Memory.ReadPhysical(address, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public byte[] ReadBytes(ulong address, int length)
    {
        var b = new byte[length];
        Memory.ReadPhysical(address, b);
        return b;
    }

    public void WriteU64(ulong address, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Memory.WritePhysical(address, b);
    }

    public void WriteU32(ulong address, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Memory.WritePhysical(address, b);
    }

    public static int PageOf(ulong address) => (int)((address - RamBase) >> GuestMemory.PageShift);

    public void Dispose()
    {
        _watchdog?.Dispose();
        Machine.Dispose();
    }
}
