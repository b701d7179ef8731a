using System.Runtime.InteropServices;

namespace Ferry.Machine.Cpu;

/// <summary>
/// One decoded instruction, as cached per 2-byte slot of a code page (16 bytes).
///
///   bytes 0-3   Imm     sign-extended immediate; CSR number for Zicsr; shift amount for shifts;
///                       for F/D arithmetic: rs3 in bits 4:0, the rm field in bits 10:8
///   bytes 4-7   Raw     the instruction bits (mtval on illegal instruction)
///   bytes 8-9   Op
///   byte  10    Rd      destination register; 32 (a sink) when the instruction names x0, so
///                       executors write unconditionally and x0 stays zero (an FP destination
///                       is Rd &amp; 31: the sink names f0)
///   byte  11    Rs1     source register 1 (or the 5-bit uimm of csrr*i)
///   byte  12    Rs2     source register 2
///   byte  13    Length  2 (RVC) or 4
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct DecodedInsn
{
    public int Imm;
    public uint Raw;
    public Op Op;
    public byte Rd;
    public byte Rs1;
    public byte Rs2;
    public byte Length;

    public const byte SinkRegister = 32;

    public override readonly string ToString() => $"{Op} rd=x{Rd} rs1=x{Rs1} rs2=x{Rs2} imm={Imm} len={Length} raw=0x{Raw:x}";
}
