using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ferry.Machine.Cpu.Translation;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Cpu;

/// <summary>
/// One RV64GC hart (IMAFDC, Zicsr, Zifencei, Zicntr; M, S and U modes; Sv39) as an interpreter over a
/// decode cache. This file holds the architectural state and the dispatch loop; the MMU and
/// TLB live in Hart.Mmu.cs, CSRs in Hart.Csr.cs, traps and interrupts in Hart.Trap.cs, the FP
/// register file and executor in Hart.Fpu.cs, the arithmetic of each extension in Semantics.cs
/// (soft-float in SoftFloat.cs).
///
/// The loop (<see cref="Run"/>) is the hot path: no allocation, no virtual calls, no
/// exceptions. Guest traps are values (a cause recorded by the slow path, then a jump to the
/// trap label). The loop runs a budget of instructions and stops early only when an
/// instruction changes what the machine must re-evaluate (interrupt enables, translation,
/// code pages, devices): pausing, snapshots and migration happen between runs.
/// The translator (Hart.Translation.cs, Translation/) runs inside the same loop: hot regions
/// become .NET code that uses the same fetch, load/store and CSR paths, and the interpreter
/// executes everything else.
/// </summary>
public sealed unsafe partial class Hart : ITranslationCache, IDisposable
{
    private readonly GuestMemory _ram;
    private readonly IHartBus _bus;

    /// <summary>x0..x31 and, at index 32, the sink that instructions naming x0 write to.</summary>
    private readonly ulong[] _x = new ulong[33];

    private ulong _pc;
    private PrivilegeMode _priv = PrivilegeMode.Machine;
    private ulong _instret;

    /// <summary>minstret/mcycle minus <see cref="_instret"/>: the guest may write those counters,
    /// but <see cref="InstructionsRetired"/> (run limits, icount determinism) never moves back.</summary>
    private ulong _counterOffset;
    private ulong _vclock;
    private bool _wfi;
    private ulong _reservation = NoReservation;

    /// <summary>Instructions left in the current run; set to 0 to end the run after the current instruction.</summary>
    private long _budget;

    /// <summary>Retired instructions of the current run at the last slow-path call (for clocks and counters).</summary>
    private long _progress;

    // The exception recorded by a slow path that returned false.
    private TrapCause _excCause;
    private ulong _excTval;

    /// <summary>The slow path could not complete (an absent page wait was cancelled): retry later.</summary>
    private bool _retry;

    private DecodedInsn _crossPageInsn;

    private const ulong NoReservation = ulong.MaxValue;

    public Hart(GuestMemory ram, IHartBus bus, ulong hartId = 0)
    {
        _ram = ram;
        _bus = bus;
        HartId = hartId;
        _codePages = new DecodedInsn[ram.PageCount][];
        _isCode = new PageBitmap(ram.PageCount);
        AllocateTlb();
        ram.AddTranslationCache(this);
        Engine = ExecutionEngine.Translator;
    }

    public ulong HartId { get; }

    public ulong Pc
    {
        get => _pc;
        set => _pc = value;
    }

    public PrivilegeMode Privilege => _priv;

    public ulong InstructionsRetired => _instret;

    /// <summary>Retired instructions plus instruction-time skipped while waiting in WFI.</summary>
    public ulong VirtualClock => _vclock + (ulong)_progress;

    /// <summary>True after WFI until an enabled interrupt is pending.</summary>
    public bool WaitingForInterrupt => _wfi;

    /// <summary>Cancels a hart blocked on an absent page (it retries the instruction on the next run).</summary>
    public CancellationToken StallCancellation { get; set; }

    public ulong GetRegister(int index) => index == 0 ? 0 : _x[index];

    public void SetRegister(int index, ulong value)
    {
        if (index != 0)
        {
            _x[index] = value;
        }
    }

    /// <summary>Ends the current run after the instruction in flight (callable from any thread).</summary>
    public void RequestEndOfRun() => Volatile.Write(ref _budget, 0);

    /// <summary>Adds idle time (WFI) to the instruction-counted clock.</summary>
    public void AdvanceVirtualClock(ulong instructions) => _vclock += instructions;

    /// <summary>
    /// Runs up to <paramref name="budget"/> instructions; returns how many retired. Returns
    /// early when waiting for an interrupt, when an instruction changed state the machine
    /// must re-evaluate, or when a slow path must be retried later.
    /// </summary>
    public long Run(long budget)
    {
        if (budget <= 0)
        {
            return 0;
        }

        Volatile.Write(ref _budget, budget);
        if (_wfi)
        {
            if ((Mip & _mie) == 0)
            {
                return 0;
            }

            _wfi = false;
        }

        TakePendingInterrupt();
        if (_worker is not null && _worker.HasResults)
        {
            InstallTranslations();
        }

        ref ulong x = ref MemoryMarshal.GetArrayDataReference(_x);
        ulong pc = _pc;
        long n = 0;
        ulong curVpn = ulong.MaxValue;
        int curPage = 0;
        ref DecodedInsn slots = ref Unsafe.NullRef<DecodedInsn>();
        bool translate = _engine == ExecutionEngine.Translator;
        TranslatedBlock?[]? pageBlocks = null;

        // Only a basic block's first instruction (the run's first, a control transfer's target or
        // successor, the one after a trap or an instruction the translator leaves to the interpreter)
        // looks for a translated block and counts toward translating one: counting every
        // instruction would make every address of a hot straight run hot, each its own region.
        bool leader = true;

        while (n < Volatile.Read(ref _budget))
        {
            ulong vpn = pc >> 12;
            if (vpn != curVpn)
            {
                TlbEntry* fe = _ftlb + (vpn & TlbMask);
                DecodedInsn[]? code;
                if (fe->Tag == vpn)
                {
                    curPage = (int)fe->Addend;
                    code = _codePages[curPage];
                }
                else
                {
                    code = FetchSlow(pc, n, out curPage);
                    if (code is null)
                    {
                        goto Fault;
                    }
                }

                slots = ref MemoryMarshal.GetArrayDataReference(code!);
                curVpn = vpn;
                if (translate)
                {
                    pageBlocks = _blocks[curPage];
                }
            }

            if (leader && translate)
            {
                leader = false;

                // A translated block runs only if the budget covers its longest pass, so runs end
                // exactly where the interpreter's do; otherwise the interpreter takes the instruction.
                TranslatedBlock? b = pageBlocks?[(int)((pc & 0xFFF) >> 1)];
                if (b is null || b.Pc != pc)
                {
                    b = null;
                    ref ushort heat = ref _heat[(int)(pc >> 1) & HeatMask];
                    if (++heat >= _hotThreshold)
                    {
                        heat = 0;
                        b = TranslateAt(pc, curPage, ref pageBlocks);
                    }
                    else if (heat == SharedLookupHeat && _shared is not null)
                    {
                        b = SharedAt(pc, curPage, ref pageBlocks);
                    }
                }

                if (b is not null && n + b.Length <= Volatile.Read(ref _budget))
                {
                    pc = b.Code(this, ref x, n);
                    n += _blockRetired;
                    leader = true;
                    if (!b.Optimized && (b.Retired += _blockRetired) >= _promotionThreshold)
                    {
                        Promote(b);
                    }

                    if (_blockFault)
                    {
                        _blockFault = false;
                        goto Fault;
                    }

                    continue;
                }
            }

            ref DecodedInsn d = ref Unsafe.Add(ref slots, (int)((pc & 0xFFF) >> 1));

        Dispatch:
            switch (d.Op)
            {
                case Op.Undecoded:
                    DecodeSlot(ref d, curPage, pc);
                    goto Dispatch;

                case Op.CrossPage:
                    if (!FetchCrossPage(pc, n))
                    {
                        goto Fault;
                    }

                    d = ref _crossPageInsn;
                    goto Dispatch;

                case Op.Illegal:
                    _excCause = TrapCause.IllegalInstruction;
                    _excTval = d.Raw;
                    goto Fault;

                // ---- RV64I: upper immediates and jumps
                case Op.Lui:
                    Unsafe.Add(ref x, d.Rd) = (ulong)(long)d.Imm;
                    break;
                case Op.Auipc:
                    Unsafe.Add(ref x, d.Rd) = pc + (ulong)(long)d.Imm;
                    break;
                case Op.Jal:
                    leader = true;
                    Unsafe.Add(ref x, d.Rd) = pc + d.Length;
                    pc += (ulong)(long)d.Imm;
                    n++;
                    continue;
                case Op.Jalr:
                {
                    leader = true;
                    ulong target = (Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm) & ~1UL;
                    Unsafe.Add(ref x, d.Rd) = pc + d.Length;
                    pc = target;
                    n++;
                    continue;
                }

                // ---- RV64I: branches
                case Op.Beq:
                    leader = true;
                    if (Unsafe.Add(ref x, d.Rs1) == Unsafe.Add(ref x, d.Rs2))
                    {
                        pc += (ulong)(long)d.Imm;
                        n++;
                        continue;
                    }

                    break;
                case Op.Bne:
                    leader = true;
                    if (Unsafe.Add(ref x, d.Rs1) != Unsafe.Add(ref x, d.Rs2))
                    {
                        pc += (ulong)(long)d.Imm;
                        n++;
                        continue;
                    }

                    break;
                case Op.Blt:
                    leader = true;
                    if ((long)Unsafe.Add(ref x, d.Rs1) < (long)Unsafe.Add(ref x, d.Rs2))
                    {
                        pc += (ulong)(long)d.Imm;
                        n++;
                        continue;
                    }

                    break;
                case Op.Bge:
                    leader = true;
                    if ((long)Unsafe.Add(ref x, d.Rs1) >= (long)Unsafe.Add(ref x, d.Rs2))
                    {
                        pc += (ulong)(long)d.Imm;
                        n++;
                        continue;
                    }

                    break;
                case Op.Bltu:
                    leader = true;
                    if (Unsafe.Add(ref x, d.Rs1) < Unsafe.Add(ref x, d.Rs2))
                    {
                        pc += (ulong)(long)d.Imm;
                        n++;
                        continue;
                    }

                    break;
                case Op.Bgeu:
                    leader = true;
                    if (Unsafe.Add(ref x, d.Rs1) >= Unsafe.Add(ref x, d.Rs2))
                    {
                        pc += (ulong)(long)d.Imm;
                        n++;
                        continue;
                    }

                    break;

                // ---- RV64I: loads (fast path: a TLB hit that does not cross the page)
                case Op.Lb:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12)
                    {
                        v = (ulong)(long)*(sbyte*)(e->Addend + (long)a);
                    }
                    else if (!LoadSlow(a, 1, n, out v))
                    {
                        goto Fault;
                    }
                    else
                    {
                        v = (ulong)(long)(sbyte)v;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                case Op.Lbu:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12)
                    {
                        v = *(byte*)(e->Addend + (long)a);
                    }
                    else if (!LoadSlow(a, 1, n, out v))
                    {
                        goto Fault;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                case Op.Lh:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFFE)
                    {
                        v = (ulong)(long)Unsafe.ReadUnaligned<short>((byte*)(e->Addend + (long)a));
                    }
                    else if (!LoadSlow(a, 2, n, out v))
                    {
                        goto Fault;
                    }
                    else
                    {
                        v = (ulong)(long)(short)v;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                case Op.Lhu:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFFE)
                    {
                        v = Unsafe.ReadUnaligned<ushort>((byte*)(e->Addend + (long)a));
                    }
                    else if (!LoadSlow(a, 2, n, out v))
                    {
                        goto Fault;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                case Op.Lw:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFFC)
                    {
                        v = (ulong)(long)Unsafe.ReadUnaligned<int>((byte*)(e->Addend + (long)a));
                    }
                    else if (!LoadSlow(a, 4, n, out v))
                    {
                        goto Fault;
                    }
                    else
                    {
                        v = (ulong)(long)(int)v;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                case Op.Lwu:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFFC)
                    {
                        v = Unsafe.ReadUnaligned<uint>((byte*)(e->Addend + (long)a));
                    }
                    else if (!LoadSlow(a, 4, n, out v))
                    {
                        goto Fault;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                case Op.Ld:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _rtlb + ((a >> 12) & TlbMask);
                    ulong v;
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFF8)
                    {
                        v = Unsafe.ReadUnaligned<ulong>((byte*)(e->Addend + (long)a));
                    }
                    else if (!LoadSlow(a, 8, n, out v))
                    {
                        goto Fault;
                    }

                    Unsafe.Add(ref x, d.Rd) = v;
                    break;
                }

                // ---- RV64I: stores (the write TLB holds only pages already dirty, populated and without code)
                case Op.Sb:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _wtlb + ((a >> 12) & TlbMask);
                    if (e->Tag == a >> 12)
                    {
                        *(byte*)(e->Addend + (long)a) = (byte)Unsafe.Add(ref x, d.Rs2);
                    }
                    else if (!StoreSlow(a, 1, Unsafe.Add(ref x, d.Rs2), n))
                    {
                        goto Fault;
                    }

                    break;
                }

                case Op.Sh:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _wtlb + ((a >> 12) & TlbMask);
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFFE)
                    {
                        Unsafe.WriteUnaligned((byte*)(e->Addend + (long)a), (ushort)Unsafe.Add(ref x, d.Rs2));
                    }
                    else if (!StoreSlow(a, 2, Unsafe.Add(ref x, d.Rs2), n))
                    {
                        goto Fault;
                    }

                    break;
                }

                case Op.Sw:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _wtlb + ((a >> 12) & TlbMask);
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFFC)
                    {
                        Unsafe.WriteUnaligned((byte*)(e->Addend + (long)a), (uint)Unsafe.Add(ref x, d.Rs2));
                    }
                    else if (!StoreSlow(a, 4, Unsafe.Add(ref x, d.Rs2), n))
                    {
                        goto Fault;
                    }

                    break;
                }

                case Op.Sd:
                {
                    ulong a = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    TlbEntry* e = _wtlb + ((a >> 12) & TlbMask);
                    if (e->Tag == a >> 12 && (a & 0xFFF) <= 0xFF8)
                    {
                        Unsafe.WriteUnaligned((byte*)(e->Addend + (long)a), Unsafe.Add(ref x, d.Rs2));
                    }
                    else if (!StoreSlow(a, 8, Unsafe.Add(ref x, d.Rs2), n))
                    {
                        goto Fault;
                    }

                    break;
                }

                // ---- RV64I: register-immediate
                case Op.Addi:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm;
                    break;
                case Op.Slti:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Slt(Unsafe.Add(ref x, d.Rs1), (ulong)(long)d.Imm);
                    break;
                case Op.Sltiu:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sltu(Unsafe.Add(ref x, d.Rs1), (ulong)(long)d.Imm);
                    break;
                case Op.Xori:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) ^ (ulong)(long)d.Imm;
                    break;
                case Op.Ori:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) | (ulong)(long)d.Imm;
                    break;
                case Op.Andi:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) & (ulong)(long)d.Imm;
                    break;
                case Op.Slli:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) << d.Imm;
                    break;
                case Op.Srli:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) >> d.Imm;
                    break;
                case Op.Srai:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sra(Unsafe.Add(ref x, d.Rs1), d.Imm);
                    break;
                case Op.Addiw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.SextW(Unsafe.Add(ref x, d.Rs1) + (ulong)(long)d.Imm);
                    break;
                case Op.Slliw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sllw(Unsafe.Add(ref x, d.Rs1), d.Imm);
                    break;
                case Op.Srliw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Srlw(Unsafe.Add(ref x, d.Rs1), d.Imm);
                    break;
                case Op.Sraiw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sraw(Unsafe.Add(ref x, d.Rs1), d.Imm);
                    break;

                // ---- RV64I: register-register
                case Op.Add:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) + Unsafe.Add(ref x, d.Rs2);
                    break;
                case Op.Sub:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) - Unsafe.Add(ref x, d.Rs2);
                    break;
                case Op.Sll:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) << (int)(Unsafe.Add(ref x, d.Rs2) & 63);
                    break;
                case Op.Slt:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Slt(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Sltu:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sltu(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Xor:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) ^ Unsafe.Add(ref x, d.Rs2);
                    break;
                case Op.Srl:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) >> (int)(Unsafe.Add(ref x, d.Rs2) & 63);
                    break;
                case Op.Sra:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sra(Unsafe.Add(ref x, d.Rs1), (int)Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Or:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) | Unsafe.Add(ref x, d.Rs2);
                    break;
                case Op.And:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) & Unsafe.Add(ref x, d.Rs2);
                    break;
                case Op.Addw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.SextW(Unsafe.Add(ref x, d.Rs1) + Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Subw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.SextW(Unsafe.Add(ref x, d.Rs1) - Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Sllw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sllw(Unsafe.Add(ref x, d.Rs1), (int)Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Srlw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Srlw(Unsafe.Add(ref x, d.Rs1), (int)Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Sraw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.Sraw(Unsafe.Add(ref x, d.Rs1), (int)Unsafe.Add(ref x, d.Rs2));
                    break;

                // ---- RV64I: system
                case Op.Fence:
                    break;
                case Op.Ecall:
                    _excCause = _priv switch
                    {
                        PrivilegeMode.User => TrapCause.EcallFromU,
                        PrivilegeMode.Supervisor => TrapCause.EcallFromS,
                        _ => TrapCause.EcallFromM,
                    };
                    _excTval = 0;
                    goto Fault;
                case Op.Ebreak:
                    // mtval = 0 as QEMU 7.2 (the spec allows 0 or the pc; console output must match QEMU's).
                    _excCause = TrapCause.Breakpoint;
                    _excTval = 0;
                    goto Fault;

                // ---- Zifencei: decoded code is kept coherent on every store, so nothing is stale here.
                case Op.FenceI:
                    break;

                // ---- M
                case Op.Mul:
                    Unsafe.Add(ref x, d.Rd) = Unsafe.Add(ref x, d.Rs1) * Unsafe.Add(ref x, d.Rs2);
                    break;
                case Op.Mulh:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Mulh(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Mulhsu:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Mulhsu(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Mulhu:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Mulhu(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Div:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Div(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Divu:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Divu(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Rem:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Rem(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Remu:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Remu(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Mulw:
                    Unsafe.Add(ref x, d.Rd) = Rv64I.SextW(Unsafe.Add(ref x, d.Rs1) * Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Divw:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Divw(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Divuw:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Divuw(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Remw:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Remw(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;
                case Op.Remuw:
                    Unsafe.Add(ref x, d.Rd) = Rv64M.Remuw(Unsafe.Add(ref x, d.Rs1), Unsafe.Add(ref x, d.Rs2));
                    break;

                // ---- A, Zicsr, privileged: out of line (rare, and they may end the run)
                case Op.LrW or Op.ScW or Op.AmoswapW or Op.AmoaddW or Op.AmoxorW or Op.AmoandW or Op.AmoorW
                    or Op.AmominW or Op.AmomaxW or Op.AmominuW or Op.AmomaxuW
                    or Op.LrD or Op.ScD or Op.AmoswapD or Op.AmoaddD or Op.AmoxorD or Op.AmoandD or Op.AmoorD
                    or Op.AmominD or Op.AmomaxD or Op.AmominuD or Op.AmomaxuD:
                    leader = true;
                    if (!ExecuteAtomic(ref d, n))
                    {
                        goto Fault;
                    }

                    break;

                // ---- F and D: out of line (soft-float; loads and stores through the same TLB paths)
                case >= Op.Flw and <= Op.FcvtDS:
                    leader = true;
                    if (!ExecuteFp(ref d, n))
                    {
                        goto Fault;
                    }

                    break;

                case Op.Csrrw or Op.Csrrs or Op.Csrrc or Op.Csrrwi or Op.Csrrsi or Op.Csrrci:
                    leader = true;
                    if (!ExecuteCsr(ref d, n))
                    {
                        goto Fault;
                    }

                    break;

                case Op.Mret or Op.Sret:
                {
                    leader = true;
                    ulong target = ExecuteReturn(d.Op);
                    if (target == ulong.MaxValue)
                    {
                        _excCause = TrapCause.IllegalInstruction;
                        _excTval = d.Raw;
                        goto Fault;
                    }

                    pc = target;
                    n++;
                    curVpn = ulong.MaxValue;
                    continue;
                }

                case Op.Wfi:
                    leader = true;
                    if (!ExecuteWfi())
                    {
                        _excCause = TrapCause.IllegalInstruction;
                        _excTval = d.Raw;
                        goto Fault;
                    }

                    break;

                case Op.SfenceVma:
                    leader = true;
                    if (!ExecuteSfenceVma())
                    {
                        _excCause = TrapCause.IllegalInstruction;
                        _excTval = d.Raw;
                        goto Fault;
                    }

                    break;

                default:
                    ThrowUnhandled(d.Op);
                    break;
            }

            pc += d.Length;
            n++;
            continue;

        Fault:
            if (_retry)
            {
                _retry = false;
                break;
            }

            _progress = n;
            leader = true;
            pc = EnterTrap(_excCause, _excTval, pc, interrupt: false);
            curVpn = ulong.MaxValue;
        }

        _pc = pc;
        _instret += (ulong)n;
        _vclock += (ulong)n;
        _progress = 0;
        return n;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void DecodeSlot(ref DecodedInsn slot, int page, ulong pc)
    {
        int offset = (int)(pc & 0xFFF);
        byte* p = _ram.Host + ((long)page << GuestMemory.PageShift) + offset;
        ushort low = *(ushort*)p;
        if ((low & 3) != 3)
        {
            slot = Decoder.Decode(low);
        }
        else if (offset == GuestMemory.PageSize - 2)
        {
            slot = new DecodedInsn { Op = Op.CrossPage, Length = 4 };
        }
        else
        {
            slot = Decoder.Decode32(*(uint*)p);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowUnhandled(Op op) => throw new InvalidOperationException($"decoded operation {op} has no executor");

    /// <summary>Stops the translation worker and frees the TLB; the decoded pages go back to <see cref="DecodedPagePool"/>. The hart must not be running.</summary>
    public void Dispose()
    {
        _worker?.Dispose();
        _ram.RemoveTranslationCache(this);
        FreeTlb();
        for (int page = 0; page < _codePages.Length; page++)
        {
            if (_codePages[page] is DecodedInsn[] code)
            {
                _codePages[page] = null;
                DecodedPagePool.Return(code);
            }
        }
    }
}
