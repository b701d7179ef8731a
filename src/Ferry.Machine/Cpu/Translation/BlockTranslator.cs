using System.Reflection;
using System.Reflection.Emit;

namespace Ferry.Machine.Cpu.Translation;

/// <summary>The code of a translated block: runs it from its first instruction and returns the next pc.</summary>
/// <remarks>
/// Called with a negative <c>retired</c>, it returns at once (the translator's way to have the JIT compile it).
/// The block writes the instructions it retired to <c>Hart._blockRetired</c>, and sets
/// <c>Hart._blockFault</c> when it stopped at an instruction that trapped (or must be retried):
/// the pc it returns is then that instruction's, and the count excludes it.
/// </remarks>
internal delegate ulong BlockCode(Hart hart, ref ulong x, long retired);

/// <summary>A guest region compiled to .NET code, by the quick tier or the optimized one.</summary>
internal sealed class TranslatedBlock(TranslationRequest request, int length, int ilBytes, BlockCode code)
{
    /// <summary>The guest virtual address of its first instruction (a block runs only there).</summary>
    public readonly ulong Pc = request.Pc;

    /// <summary>The most instructions one pass retires (a loop back to its start checks the budget again).</summary>
    public readonly int Length = length;

    public readonly int IlBytes = ilBytes;

    public readonly BlockCode Code = code;

    /// <summary>What it was translated from (a quick block is translated again, optimized, once it is hot).</summary>
    public readonly TranslationRequest Request = request;

    /// <summary>Compiled with the JIT's optimizations (the final tier).</summary>
    public readonly bool Optimized = request.Optimize;

    /// <summary>Guest instructions it retired so far (quick blocks, until their promotion; hart thread only).</summary>
    public long Retired;
}

/// <summary>
/// Translates a guest basic block (a straight run of decoded instructions on one page, ended by
/// a branch or jump, an instruction it does not cover, the page's end or
/// <see cref="MaxInstructions"/>) to a DynamicMethod that the JIT compiles.
///
/// Shape of the code: the guest registers the block touches live in IL locals (loaded at
/// entry, the written ones stored at the single exit); loads and stores inline the
/// interpreter's TLB probe (tag compare, page-crossing check, host = va + addend) and call the
/// hart's own LoadSlow/StoreSlow otherwise; a branch or jump back to the block's first
/// instruction loops inside the method while the run's budget covers another pass.
/// Instructions not covered (CSR, atomics, FP, system, cross-page) end the block before them,
/// and the interpreter executes them.
/// </summary>
internal static class BlockTranslator
{
    public const int MaxInstructions = 96;

    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    private static readonly FieldInfo ReadTlb = typeof(Hart).GetField("_rtlb", Private)!;
    private static readonly FieldInfo WriteTlb = typeof(Hart).GetField("_wtlb", Private)!;
    private static readonly FieldInfo Budget = typeof(Hart).GetField("_budget", Private)!;
    private static readonly FieldInfo Retired = typeof(Hart).GetField(nameof(Hart._blockRetired), Private)!;
    private static readonly FieldInfo Faulted = typeof(Hart).GetField(nameof(Hart._blockFault), Private)!;
    private static readonly MethodInfo LoadSlow = typeof(Hart).GetMethod("LoadSlow", Private)!;
    private static readonly MethodInfo StoreSlow = typeof(Hart).GetMethod("StoreSlow", Private)!;
    private static readonly MethodInfo BlockLoad = typeof(Hart).GetMethod(nameof(Hart.BlockLoad), Private)!;
    private static readonly MethodInfo BlockStore = typeof(Hart).GetMethod(nameof(Hart.BlockStore), Private)!;
    private static readonly FieldInfo ExitPc = typeof(Hart).GetField(nameof(Hart._blockExitPc), Private)!;
    private static readonly FieldInfo ExitN = typeof(Hart).GetField(nameof(Hart._blockExitN), Private)!;

    private static readonly Type[] Parameters = [typeof(Hart), typeof(ulong).MakeByRefType(), typeof(long)];

    /// <summary>True for the operations the translator compiles (RV64I, M, Zifencei).</summary>
    public static bool Covers(Op op) => op is >= Op.Lui and <= Op.Sraw or Op.Fence or Op.FenceI or >= Op.Mul and <= Op.Remuw;

    /// <summary>True for the operations that end a block (control transfers).</summary>
    public static bool EndsBlock(Op op) => op is >= Op.Jal and <= Op.Bgeu;

    /// <summary>
    /// Translates a region to an optimized DynamicMethod: the request's region maps page offsets to
    /// the covered instructions reachable from its entry on its page.
    /// </summary>
    public static TranslatedBlock Translate(TranslationRequest request)
    {
        var method = new DynamicMethod($"rv@{request.Pc:x}", typeof(ulong), Parameters, typeof(Hart), skipVisibility: true)
        {
            InitLocals = false, // every local is written before it is read
        };
        ILGenerator il = method.GetILGenerator(64 + (request.Region.Count * 48));
        int length = new Emitter(il, request.Pc, request.Region, quick: false).Emit();
        var code = method.CreateDelegate<BlockCode>();
        return new TranslatedBlock(request, length, il.ILOffset, code);
    }

    /// <summary>Emits a region into <paramref name="il"/>; returns the most instructions a pass from its entry retires.</summary>
    public static int Emit(ILGenerator il, TranslationRequest request) => new Emitter(il, request.Pc, request.Region, quick: true).Emit();

    public static Type[] ParameterTypes => [.. Parameters];

    /// <summary>True if <paramref name="target"/> is on the page of <paramref name="pc"/>.</summary>
    public static bool SamePage(ulong pc, ulong target) => (pc >> 12) == (target >> 12);

    /// <summary>
    /// Emits one region. Its basic blocks start at the region's entry, at branch targets inside it
    /// and after conditional branches; <c>_base</c> (the run's retired count at the start of the
    /// current basic block) advances on every edge. An edge to a higher address keeps the bound
    /// checked at entry (the longest path from any block only shrinks along such edges); an edge
    /// back to a lower or equal address checks the run's budget for the longest path from its
    /// target and exits when it does not fit.
    /// </summary>
    private sealed class Emitter
    {
        private readonly ILGenerator _il;
        private readonly ulong _start;
        private readonly ulong _page;
        private readonly SortedList<int, DecodedInsn> _region;
        private readonly LocalBuilder?[] _reg = new LocalBuilder?[33];
        private readonly bool[] _written = new bool[33];
        private readonly LocalBuilder _base;
        private readonly LocalBuilder _exitPc;
        private readonly LocalBuilder _exitN;
        private readonly LocalBuilder _address;
        private readonly LocalBuilder _value;
        private readonly LocalBuilder _entry;
        private readonly LocalBuilder _sink;
        private LocalBuilder? _rtlb;
        private LocalBuilder? _wtlb;
        private readonly Label _exit;
        private readonly bool _quick;
        private Label? _leave;
        private readonly SortedDictionary<int, Label> _leaders = [];
        private readonly Dictionary<int, int> _longest = [];

        /// <param name="quick">
        /// For the quick tier: loads and stores call the hart's BlockLoad/BlockStore instead of
        /// inlining the TLB probe and the slow path, so the method is small and quick to compile.
        /// </param>
        public Emitter(ILGenerator il, ulong start, SortedList<int, DecodedInsn> region, bool quick)
        {
            _il = il;
            _quick = quick;
            _start = start;
            _page = start & ~0xFFFUL;
            _region = region;
            _base = il.DeclareLocal(typeof(long));
            _exitPc = il.DeclareLocal(typeof(ulong));
            _exitN = il.DeclareLocal(typeof(long));
            _address = il.DeclareLocal(typeof(ulong));
            _value = il.DeclareLocal(typeof(ulong));
            _entry = il.DeclareLocal(typeof(nint));
            _sink = il.DeclareLocal(typeof(ulong));
            _exit = il.DefineLabel();
        }

        /// <summary>Emits the method; returns the most instructions a pass from the entry retires before an edge back.</summary>
        public int Emit()
        {
            FindBlocks();

            // A negative count only compiles the method (the translator calls it so, to JIT it at once).
            Label run = _il.DefineLabel();
            _il.Emit(OpCodes.Ldarg_2);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Conv_I8);
            _il.Emit(OpCodes.Bge, run);
            Const(_start);
            _il.Emit(OpCodes.Ret);
            _il.MarkLabel(run);

            // Prologue: the base count, the TLB tables, the registers the region touches.
            _il.Emit(OpCodes.Ldarg_2);
            _il.Emit(OpCodes.Stloc, _base);
            foreach (DecodedInsn d in _region.Values)
            {
                Touch(d);
            }

            for (int r = 1; r < 32; r++)
            {
                if (_reg[r] is { } local)
                {
                    _il.Emit(OpCodes.Ldarg_1);
                    _il.Emit(OpCodes.Ldc_I4, r * 8);
                    _il.Emit(OpCodes.Add);
                    _il.Emit(OpCodes.Ldind_I8);
                    _il.Emit(OpCodes.Stloc, local);
                }
            }

            int entry = Offset(_start);
            _il.Emit(OpCodes.Br, _leaders[entry]);
            foreach ((int leader, Label label) in _leaders)
            {
                _il.MarkLabel(label);
                EmitBlock(leader);
            }

            // A memory helper's exit: it left the pc and count (and the fault flag) in the hart.
            if (_leave is { } leave)
            {
                _il.MarkLabel(leave);
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldfld, ExitPc);
                _il.Emit(OpCodes.Stloc, _exitPc);
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldfld, ExitN);
                _il.Emit(OpCodes.Stloc, _exitN);
            }

            // The single exit: store the written registers, report the count, return the pc.
            _il.MarkLabel(_exit);
            for (int r = 1; r < 32; r++)
            {
                if (_written[r])
                {
                    _il.Emit(OpCodes.Ldarg_1);
                    _il.Emit(OpCodes.Ldc_I4, r * 8);
                    _il.Emit(OpCodes.Add);
                    _il.Emit(OpCodes.Ldloc, _reg[r]!);
                    _il.Emit(OpCodes.Stind_I8);
                }
            }

            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _exitN);
            _il.Emit(OpCodes.Ldarg_2);
            _il.Emit(OpCodes.Sub);
            _il.Emit(OpCodes.Stfld, Retired);
            _il.Emit(OpCodes.Ldloc, _exitPc);
            _il.Emit(OpCodes.Ret);
            return _longest[entry];
        }

        private int Offset(ulong pc) => (int)(pc & 0xFFF);

        private ulong PcOf(int offset) => _page + (ulong)offset;

        /// <summary>The target of a static control transfer inside the region, or -1.</summary>
        private int InternalTarget(int offset, DecodedInsn d)
        {
            ulong pc = PcOf(offset);
            ulong target = pc + (ulong)(long)d.Imm;
            return d.Op != Op.Jalr && SamePage(pc, target) && _region.ContainsKey(Offset(target)) ? Offset(target) : -1;
        }

        private int InternalFallthrough(int offset, DecodedInsn d)
        {
            int next = offset + d.Length;
            return next < 0x1000 && _region.ContainsKey(next) ? next : -1;
        }

        /// <summary>The offsets of a basic block's instructions, from its leader to its end.</summary>
        private List<int> BlockAt(int leader)
        {
            var offsets = new List<int>();
            int at = leader;
            while (true)
            {
                offsets.Add(at);
                DecodedInsn d = _region[at];
                if (EndsBlock(d.Op))
                {
                    return offsets;
                }

                int next = InternalFallthrough(at, d);
                if (next < 0 || _leaders.ContainsKey(next))
                {
                    return offsets;
                }

                at = next;
            }
        }

        private void FindBlocks()
        {
            _leaders[Offset(_start)] = _il.DefineLabel();
            foreach ((int offset, DecodedInsn d) in _region)
            {
                if (d.Op is >= Op.Jal and <= Op.Bgeu)
                {
                    int target = InternalTarget(offset, d);
                    if (target >= 0)
                    {
                        _leaders.TryAdd(target, _il.DefineLabel());
                    }

                    int next = d.Op is >= Op.Beq and <= Op.Bgeu ? InternalFallthrough(offset, d) : -1;
                    if (next >= 0)
                    {
                        _leaders.TryAdd(next, _il.DefineLabel());
                    }
                }
            }

            // Longest forward path from each leader (edges to higher addresses form a DAG).
            foreach (int leader in _leaders.Keys.Reverse())
            {
                List<int> block = BlockAt(leader);
                int last = block[^1];
                int longest = 0;
                foreach (int successor in Successors(last))
                {
                    if (successor > last)
                    {
                        longest = Math.Max(longest, _longest[successor]);
                    }
                }

                _longest[leader] = block.Count + longest;
            }
        }

        private IEnumerable<int> Successors(int last)
        {
            DecodedInsn d = _region[last];
            if (d.Op is >= Op.Jal and <= Op.Bgeu)
            {
                int target = InternalTarget(last, d);
                if (target >= 0)
                {
                    yield return target;
                }
            }

            if (d.Op is not (Op.Jal or Op.Jalr))
            {
                int next = InternalFallthrough(last, d);
                if (next >= 0)
                {
                    yield return next;
                }
            }
        }

        private void EmitBlock(int leader)
        {
            List<int> block = BlockAt(leader);
            for (int k = 0; k < block.Count - 1; k++)
            {
                EmitInstruction(_region[block[k]], PcOf(block[k]), k);
            }

            int last = block[^1];
            DecodedInsn d = _region[last];
            ulong pc = PcOf(last);
            ulong imm = (ulong)(long)d.Imm;
            switch (d.Op)
            {
                case Op.Jal:
                    Const(pc + d.Length);
                    StoreRd(d.Rd);
                    Advance(block.Count);
                    Edge(last, pc + imm);
                    break;
                case Op.Jalr:
                    // The target is read before rd is written (rd may be rs1).
                    LoadReg(d.Rs1);
                    Const(imm);
                    _il.Emit(OpCodes.Add);
                    Const(~1UL);
                    _il.Emit(OpCodes.And);
                    _il.Emit(OpCodes.Stloc, _exitPc);
                    Const(pc + d.Length);
                    StoreRd(d.Rd);
                    Advance(block.Count);
                    SetExitCount(0);
                    _il.Emit(OpCodes.Br, _exit);
                    break;
                case Op.Beq or Op.Bne or Op.Blt or Op.Bge or Op.Bltu or Op.Bgeu:
                {
                    Label taken = _il.DefineLabel();
                    Advance(block.Count);
                    LoadReg(d.Rs1);
                    LoadReg(d.Rs2);
                    _il.Emit(d.Op switch
                    {
                        Op.Beq => OpCodes.Beq,
                        Op.Bne => OpCodes.Bne_Un,
                        Op.Blt => OpCodes.Blt,
                        Op.Bge => OpCodes.Bge,
                        Op.Bltu => OpCodes.Blt_Un,
                        _ => OpCodes.Bge_Un,
                    }, taken);
                    Edge(last, pc + d.Length);
                    _il.MarkLabel(taken);
                    Edge(last, pc + imm);
                    break;
                }

                default:
                    EmitInstruction(d, pc, block.Count - 1);
                    Advance(block.Count);
                    Edge(last, pc + d.Length);
                    break;
            }
        }

        /// <summary>base += count (the basic block's instructions, now retired).</summary>
        private void Advance(int count)
        {
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I8, (long)count);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _base);
        }

        /// <summary>
        /// An edge from the instruction at <paramref name="from"/> to <paramref name="target"/>
        /// (base already advanced): a branch to its block inside the region, after a budget check
        /// if it goes back; otherwise an exit.
        /// </summary>
        private void Edge(int from, ulong target)
        {
            int offset = SamePage(_start, target) ? Offset(target) : -1;
            if (offset < 0 || !_leaders.TryGetValue(offset, out Label label))
            {
                ExitTo(target, 0);
                return;
            }

            if (offset > from)
            {
                _il.Emit(OpCodes.Br, label);
                return;
            }

            // if (base + longest(target) <= budget) goto target; else exit there.
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I8, (long)_longest[offset]);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Volatile);
            _il.Emit(OpCodes.Ldfld, Budget);
            _il.Emit(OpCodes.Ble, label);
            ExitTo(target, 0);
        }

        private void Touch(DecodedInsn d)
        {
            Use(d.Rs1);
            Use(d.Rs2);
            if (d.Rd is > 0 and < 32 && WritesRd(d.Op))
            {
                Use(d.Rd);
                _written[d.Rd] = true;
            }

            if (_quick)
            {
                return; // the helpers probe the TLB themselves
            }

            if (IsLoad(d.Op))
            {
                _rtlb ??= TlbLocal(ReadTlb);
            }
            else if (IsStore(d.Op))
            {
                _wtlb ??= TlbLocal(WriteTlb);
            }
        }

        private void Use(byte r)
        {
            if (r is > 0 and < 32)
            {
                _reg[r] ??= _il.DeclareLocal(typeof(ulong));
            }
        }

        private LocalBuilder TlbLocal(FieldInfo table)
        {
            // The hart's TLB table pointers change only with the privilege or mstatus (which end the run), never inside a block.
            LocalBuilder local = _il.DeclareLocal(typeof(nint));
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, table);
            _il.Emit(OpCodes.Stloc, local);
            return local;
        }

        private static bool WritesRd(Op op) => !(IsStore(op) || op is >= Op.Beq and <= Op.Bgeu or Op.Fence or Op.FenceI);

        private static bool IsLoad(Op op) => op is >= Op.Lb and <= Op.Lwu;

        private static bool IsStore(Op op) => op is >= Op.Sb and <= Op.Sd;

        private void LoadReg(byte r)
        {
            if (r is 0 or 32)
            {
                _il.Emit(OpCodes.Ldc_I8, 0L);
            }
            else
            {
                _il.Emit(OpCodes.Ldloc, _reg[r]!);
            }
        }

        /// <summary>Stores the value on the stack to rd (dropped for x0).</summary>
        private void StoreRd(byte rd)
        {
            _il.Emit(OpCodes.Stloc, rd is > 0 and < 32 ? _reg[rd]! : _sink);
        }

        private void Const(ulong v) => _il.Emit(OpCodes.Ldc_I8, (long)v);

        private void EmitInstruction(DecodedInsn d, ulong pc, int i)
        {
            ulong imm = (ulong)(long)d.Imm;
            switch (d.Op)
            {
                case Op.Lui:
                    Const(imm);
                    StoreRd(d.Rd);
                    break;
                case Op.Auipc:
                    Const(pc + imm);
                    StoreRd(d.Rd);
                    break;
                case Op.Lb: Load(d, pc, i, 1, OpCodes.Ldind_I1, OpCodes.Conv_I8, signed: true); break;
                case Op.Lbu: Load(d, pc, i, 1, OpCodes.Ldind_U1, OpCodes.Conv_U8, signed: false); break;
                case Op.Lh: Load(d, pc, i, 2, OpCodes.Ldind_I2, OpCodes.Conv_I8, signed: true); break;
                case Op.Lhu: Load(d, pc, i, 2, OpCodes.Ldind_U2, OpCodes.Conv_U8, signed: false); break;
                case Op.Lw: Load(d, pc, i, 4, OpCodes.Ldind_I4, OpCodes.Conv_I8, signed: true); break;
                case Op.Lwu: Load(d, pc, i, 4, OpCodes.Ldind_U4, OpCodes.Conv_U8, signed: false); break;
                case Op.Ld: Load(d, pc, i, 8, OpCodes.Ldind_I8, null, signed: false); break;
                case Op.Sb: Store(d, pc, i, 1, OpCodes.Stind_I1); break;
                case Op.Sh: Store(d, pc, i, 2, OpCodes.Stind_I2); break;
                case Op.Sw: Store(d, pc, i, 4, OpCodes.Stind_I4); break;
                case Op.Sd: Store(d, pc, i, 8, OpCodes.Stind_I8); break;

                case Op.Fence or Op.FenceI:
                    // Decoded code and translations are dropped on every store to their page, so nothing is stale here.
                    break;

                default:
                    if (d.Rd is 0 or 32)
                    {
                        break; // no side effect but the register write
                    }

                    Alu(d);
                    StoreRd(d.Rd);
                    break;
            }
        }

        /// <summary>Pushes the result of a register-register or register-immediate operation.</summary>
        private void Alu(DecodedInsn d)
        {
            ulong imm = (ulong)(long)d.Imm;
            switch (d.Op)
            {
                case Op.Addi: Binary(d.Rs1, imm, OpCodes.Add); break;
                case Op.Slti: Binary(d.Rs1, imm, OpCodes.Clt); _il.Emit(OpCodes.Conv_U8); break;
                case Op.Sltiu: Binary(d.Rs1, imm, OpCodes.Clt_Un); _il.Emit(OpCodes.Conv_U8); break;
                case Op.Xori: Binary(d.Rs1, imm, OpCodes.Xor); break;
                case Op.Ori: Binary(d.Rs1, imm, OpCodes.Or); break;
                case Op.Andi: Binary(d.Rs1, imm, OpCodes.And); break;
                case Op.Slli: ShiftImm(d.Rs1, d.Imm & 63, OpCodes.Shl); break;
                case Op.Srli: ShiftImm(d.Rs1, d.Imm & 63, OpCodes.Shr_Un); break;
                case Op.Srai: ShiftImm(d.Rs1, d.Imm & 63, OpCodes.Shr); break;
                case Op.Addiw: Binary(d.Rs1, imm, OpCodes.Add); SextW(); break;
                case Op.Slliw: Word(d.Rs1); _il.Emit(OpCodes.Ldc_I4, d.Imm & 31); _il.Emit(OpCodes.Shl); _il.Emit(OpCodes.Conv_I8); break;
                case Op.Srliw: Word(d.Rs1); _il.Emit(OpCodes.Ldc_I4, d.Imm & 31); _il.Emit(OpCodes.Shr_Un); _il.Emit(OpCodes.Conv_I8); break;
                case Op.Sraiw: Word(d.Rs1); _il.Emit(OpCodes.Ldc_I4, d.Imm & 31); _il.Emit(OpCodes.Shr); _il.Emit(OpCodes.Conv_I8); break;

                case Op.Add: Binary(d.Rs1, d.Rs2, OpCodes.Add); break;
                case Op.Sub: Binary(d.Rs1, d.Rs2, OpCodes.Sub); break;
                case Op.Sll: ShiftReg(d.Rs1, d.Rs2, 63, OpCodes.Shl); break;
                case Op.Slt: Binary(d.Rs1, d.Rs2, OpCodes.Clt); _il.Emit(OpCodes.Conv_U8); break;
                case Op.Sltu: Binary(d.Rs1, d.Rs2, OpCodes.Clt_Un); _il.Emit(OpCodes.Conv_U8); break;
                case Op.Xor: Binary(d.Rs1, d.Rs2, OpCodes.Xor); break;
                case Op.Srl: ShiftReg(d.Rs1, d.Rs2, 63, OpCodes.Shr_Un); break;
                case Op.Sra: ShiftReg(d.Rs1, d.Rs2, 63, OpCodes.Shr); break;
                case Op.Or: Binary(d.Rs1, d.Rs2, OpCodes.Or); break;
                case Op.And: Binary(d.Rs1, d.Rs2, OpCodes.And); break;
                case Op.Addw: Binary(d.Rs1, d.Rs2, OpCodes.Add); SextW(); break;
                case Op.Subw: Binary(d.Rs1, d.Rs2, OpCodes.Sub); SextW(); break;
                case Op.Sllw: Word(d.Rs1); ShiftAmount(d.Rs2, 31); _il.Emit(OpCodes.Shl); _il.Emit(OpCodes.Conv_I8); break;
                case Op.Srlw: Word(d.Rs1); ShiftAmount(d.Rs2, 31); _il.Emit(OpCodes.Shr_Un); _il.Emit(OpCodes.Conv_I8); break;
                case Op.Sraw: Word(d.Rs1); ShiftAmount(d.Rs2, 31); _il.Emit(OpCodes.Shr); _il.Emit(OpCodes.Conv_I8); break;

                case Op.Mul: Binary(d.Rs1, d.Rs2, OpCodes.Mul); break;
                case Op.Mulw: Binary(d.Rs1, d.Rs2, OpCodes.Mul); SextW(); break;
                case Op.Mulh: Call(d, nameof(Rv64M.Mulh)); break;
                case Op.Mulhsu: Call(d, nameof(Rv64M.Mulhsu)); break;
                case Op.Mulhu: Call(d, nameof(Rv64M.Mulhu)); break;
                case Op.Div: Call(d, nameof(Rv64M.Div)); break;
                case Op.Divu: Call(d, nameof(Rv64M.Divu)); break;
                case Op.Rem: Call(d, nameof(Rv64M.Rem)); break;
                case Op.Remu: Call(d, nameof(Rv64M.Remu)); break;
                case Op.Divw: Call(d, nameof(Rv64M.Divw)); break;
                case Op.Divuw: Call(d, nameof(Rv64M.Divuw)); break;
                case Op.Remw: Call(d, nameof(Rv64M.Remw)); break;
                case Op.Remuw: Call(d, nameof(Rv64M.Remuw)); break;
                default: throw new InvalidOperationException($"the translator does not cover {d.Op}");
            }
        }

        private void Binary(byte rs1, ulong imm, OpCode op)
        {
            LoadReg(rs1);
            Const(imm);
            _il.Emit(op);
        }

        private void Binary(byte rs1, byte rs2, OpCode op)
        {
            LoadReg(rs1);
            LoadReg(rs2);
            _il.Emit(op);
        }

        private void ShiftImm(byte rs1, int amount, OpCode op)
        {
            LoadReg(rs1);
            _il.Emit(OpCodes.Ldc_I4, amount);
            _il.Emit(op);
        }

        private void ShiftReg(byte rs1, byte rs2, int mask, OpCode op)
        {
            LoadReg(rs1);
            ShiftAmount(rs2, mask);
            _il.Emit(op);
        }

        private void ShiftAmount(byte rs2, int mask)
        {
            LoadReg(rs2);
            _il.Emit(OpCodes.Conv_I4);
            _il.Emit(OpCodes.Ldc_I4, mask);
            _il.Emit(OpCodes.And);
        }

        private void Word(byte rs1)
        {
            LoadReg(rs1);
            _il.Emit(OpCodes.Conv_U4);
        }

        private void SextW()
        {
            _il.Emit(OpCodes.Conv_I4);
            _il.Emit(OpCodes.Conv_I8);
        }

        private void Call(DecodedInsn d, string name)
        {
            LoadReg(d.Rs1);
            LoadReg(d.Rs2);
            _il.Emit(OpCodes.Call, typeof(Rv64M).GetMethod(name, BindingFlags.Public | BindingFlags.Static)!);
        }

        /// <summary>e = table + ((a >> 12) &amp; mask) * sizeof(TlbEntry); branches to slow unless the tag matches and the access stays on the page.</summary>
        private void Probe(LocalBuilder table, int size, Label slow)
        {
            _il.Emit(OpCodes.Ldloc, table);
            _il.Emit(OpCodes.Ldloc, _address);
            _il.Emit(OpCodes.Ldc_I4, 12);
            _il.Emit(OpCodes.Shr_Un);
            Const(Hart.TlbMask);
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Ldc_I4, 4);
            _il.Emit(OpCodes.Shl);
            _il.Emit(OpCodes.Conv_U);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _entry);

            _il.Emit(OpCodes.Ldloc, _entry);
            _il.Emit(OpCodes.Ldind_I8);
            _il.Emit(OpCodes.Ldloc, _address);
            _il.Emit(OpCodes.Ldc_I4, 12);
            _il.Emit(OpCodes.Shr_Un);
            _il.Emit(OpCodes.Bne_Un, slow);
            if (size > 1)
            {
                _il.Emit(OpCodes.Ldloc, _address);
                Const(0xFFF);
                _il.Emit(OpCodes.And);
                Const((ulong)(0x1000 - size));
                _il.Emit(OpCodes.Bgt_Un, slow);
            }

            // host = addend + va
            _il.Emit(OpCodes.Ldloc, _entry);
            _il.Emit(OpCodes.Ldc_I4, 8);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldind_I8);
            _il.Emit(OpCodes.Ldloc, _address);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Conv_I);
        }

        private void Address(DecodedInsn d)
        {
            LoadReg(d.Rs1);
            Const((ulong)(long)d.Imm);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _address);
        }

        private void Load(DecodedInsn d, ulong pc, int i, int size, OpCode load, OpCode? widen, bool signed)
        {
            if (_quick)
            {
                // if (hart.BlockLoad(va, kind, n, pc, ref rd)) leave;
                _il.Emit(OpCodes.Ldarg_0);
                LoadReg(d.Rs1);
                Const((ulong)(long)d.Imm);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldc_I4, size | (signed ? 0x10 : 0) | (d.Length << 8));
                Count(i);
                Const(pc);
                _il.Emit(OpCodes.Ldloca, d.Rd is > 0 and < 32 ? _reg[d.Rd]! : _sink);
                _il.Emit(OpCodes.Call, BlockLoad);
                _il.Emit(OpCodes.Brtrue, Leave);
                return;
            }

            Label slow = _il.DefineLabel();
            Label done = _il.DefineLabel();
            Address(d);
            Probe(_rtlb!, size, slow);
            if (size > 1)
            {
                _il.Emit(OpCodes.Unaligned, (byte)1);
            }

            _il.Emit(load);
            if (widen is { } w)
            {
                _il.Emit(w);
            }

            StoreRd(d.Rd);
            _il.Emit(OpCodes.Br, done);

            // Slow path: the hart's own (TLB fill, page facts, devices); it returns the raw zero-extended value.
            _il.MarkLabel(slow);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _address);
            _il.Emit(OpCodes.Ldc_I4, size);
            Count(i);
            _il.Emit(OpCodes.Ldloca, _value);
            _il.Emit(OpCodes.Call, LoadSlow);
            FaultUnless(pc, i);
            _il.Emit(OpCodes.Ldloc, _value);
            if (signed)
            {
                _il.Emit(size switch { 1 => OpCodes.Conv_I1, 2 => OpCodes.Conv_I2, _ => OpCodes.Conv_I4 });
                _il.Emit(OpCodes.Conv_I8);
            }

            StoreRd(d.Rd);
            LeaveIfRunEnded(pc + d.Length, i + 1);
            _il.MarkLabel(done);
        }

        private void Store(DecodedInsn d, ulong pc, int i, int size, OpCode store)
        {
            if (_quick)
            {
                // if (hart.BlockStore(va, kind, value, n, pc)) leave;
                _il.Emit(OpCodes.Ldarg_0);
                LoadReg(d.Rs1);
                Const((ulong)(long)d.Imm);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldc_I4, size | (d.Length << 8));
                LoadReg(d.Rs2);
                Count(i);
                Const(pc);
                _il.Emit(OpCodes.Call, BlockStore);
                _il.Emit(OpCodes.Brtrue, Leave);
                return;
            }

            Label slow = _il.DefineLabel();
            Label done = _il.DefineLabel();
            Address(d);
            Probe(_wtlb!, size, slow);
            LoadReg(d.Rs2);
            if (size > 1)
            {
                _il.Emit(OpCodes.Unaligned, (byte)1);
            }

            _il.Emit(store);
            _il.Emit(OpCodes.Br, done);

            // Slow path: the first write to a clean page, a code page (drops its translations and
            // ends the run), a device, a page fault.
            _il.MarkLabel(slow);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _address);
            _il.Emit(OpCodes.Ldc_I4, size);
            LoadReg(d.Rs2);
            Count(i);
            _il.Emit(OpCodes.Call, StoreSlow);
            FaultUnless(pc, i);
            LeaveIfRunEnded(pc + d.Length, i + 1);
            _il.MarkLabel(done);
        }

        /// <summary>The label where a quick block leaves after a memory helper asked it to.</summary>
        private Label Leave => _leave ??= _il.DefineLabel();

        /// <summary>Pushes the run's retired count before instruction i.</summary>
        private void Count(int i)
        {
            _il.Emit(OpCodes.Ldloc, _base);
            if (i != 0)
            {
                _il.Emit(OpCodes.Ldc_I8, (long)i);
                _il.Emit(OpCodes.Add);
            }
        }

        private void SetExitCount(int count)
        {
            Count(count);
            _il.Emit(OpCodes.Stloc, _exitN);
        }

        /// <summary>With the slow path's bool on the stack: on false, exit at this instruction as a fault.</summary>
        private void FaultUnless(ulong pc, int i)
        {
            Label ok = _il.DefineLabel();
            _il.Emit(OpCodes.Brtrue, ok);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4_1);
            _il.Emit(OpCodes.Stfld, Faulted);
            Const(pc);
            _il.Emit(OpCodes.Stloc, _exitPc);
            SetExitCount(i);
            _il.Emit(OpCodes.Br, _exit);
            _il.MarkLabel(ok);
        }

        /// <summary>After a slow path: if it ended the run (device write, code page written), leave after this instruction.</summary>
        private void LeaveIfRunEnded(ulong next, int count)
        {
            Label go = _il.DefineLabel();
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Volatile);
            _il.Emit(OpCodes.Ldfld, Budget);
            _il.Emit(OpCodes.Brtrue, go);
            ExitTo(next, count);
            _il.MarkLabel(go);
        }

        private void ExitTo(ulong pc, int count)
        {
            Const(pc);
            _il.Emit(OpCodes.Stloc, _exitPc);
            SetExitCount(count);
            _il.Emit(OpCodes.Br, _exit);
        }
    }
}
