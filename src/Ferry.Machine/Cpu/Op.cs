namespace Ferry.Machine.Cpu;

/// <summary>
/// Every operation the hart executes. Compressed (RVC) instructions decode to the same
/// operations as their 32-bit expansions, with <see cref="DecodedInsn.Length"/> = 2.
/// </summary>
public enum Op : ushort
{
    /// <summary>Slot of the decode cache not decoded yet (must be 0: fresh arrays are zero).</summary>
    Undecoded = 0,

    /// <summary>A 32-bit instruction that straddles a page boundary: fetched and decoded every time.</summary>
    CrossPage,
    Illegal,

    // RV64I
    Lui, Auipc, Jal, Jalr,
    Beq, Bne, Blt, Bge, Bltu, Bgeu,
    Lb, Lh, Lw, Ld, Lbu, Lhu, Lwu,
    Sb, Sh, Sw, Sd,
    Addi, Slti, Sltiu, Xori, Ori, Andi, Slli, Srli, Srai,
    Add, Sub, Sll, Slt, Sltu, Xor, Srl, Sra, Or, And,
    Addiw, Slliw, Srliw, Sraiw,
    Addw, Subw, Sllw, Srlw, Sraw,
    Fence, Ecall, Ebreak,

    // Zifencei
    FenceI,

    // M
    Mul, Mulh, Mulhsu, Mulhu, Div, Divu, Rem, Remu,
    Mulw, Divw, Divuw, Remw, Remuw,

    // A
    LrW, ScW, AmoswapW, AmoaddW, AmoxorW, AmoandW, AmoorW, AmominW, AmomaxW, AmominuW, AmomaxuW,
    LrD, ScD, AmoswapD, AmoaddD, AmoxorD, AmoandD, AmoorD, AmominD, AmomaxD, AmominuD, AmomaxuD,

    // Zicsr
    Csrrw, Csrrs, Csrrc, Csrrwi, Csrrsi, Csrrci,

    // Privileged
    Mret, Sret, Wfi, SfenceVma,

    // F and D (kept last and contiguous: the hart dispatches Flw..FmvDX to one out-of-line executor)
    Flw, Fld, Fsw, Fsd,
    FaddS, FsubS, FmulS, FdivS, FsqrtS, FsgnjS, FsgnjnS, FsgnjxS, FminS, FmaxS,
    FcvtWS, FcvtWuS, FcvtLS, FcvtLuS, FmvXW, FeqS, FltS, FleS, FclassS,
    FcvtSW, FcvtSWu, FcvtSL, FcvtSLu, FmvWX,
    FmaddS, FmsubS, FnmsubS, FnmaddS,
    FaddD, FsubD, FmulD, FdivD, FsqrtD, FsgnjD, FsgnjnD, FsgnjxD, FminD, FmaxD,
    FcvtWD, FcvtWuD, FcvtLD, FcvtLuD, FmvXD, FeqD, FltD, FleD, FclassD,
    FcvtDW, FcvtDWu, FcvtDL, FcvtDLu, FmvDX,
    FmaddD, FmsubD, FnmsubD, FnmaddD,
    FcvtSD, FcvtDS,
}
