/*
 * rv64mi: machine mode.  misa/mhartid/ID CSRs, Zicsr read-modify-write
 * semantics, ecall/ebreak/c.ebreak/illegal-instruction traps (mcause, mepc,
 * mtval = instruction bits), unknown CSRs and writes to read-only CSRs,
 * misaligned load/store (no trap) and AMO (cause 4, QEMU 7.2),
 * load/store/fetch access faults on unmapped addresses, mstatus MIE/MPIE/MPP
 * across trap and mret, mret to mepc, counters, machine timer interrupt
 * (wfi with MIE=1 and MIE=0), machine software interrupt via CLINT msip,
 * interrupt priority and masking, vectored mtvec.
 */
#define TEST_NAME "rv64mi"
#include "env.h"

/* expect an exception of `cause` at label 2 inside `code`, continue after */
#define TEST_EXC_NOTVAL(n, cause, code...) \
test_##n: li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(3f); code; j fail; 3: \
    CHECK_TI(TI_CAUSE, cause); la t4, 2b; LOAD_TI(t5, TI_EPC); FAIL_IF_NE2(t5, t4); \
    CHECK_TI(TI_MODE, 3)
#define TEST_EXC(n, cause, tval, code...) \
    TEST_EXC_NOTVAL(n, cause, code); CHECK_TI(TI_TVAL, tval)
/* illegal instruction: mtval must equal the (32-bit) instruction at label 2 */
#define TEST_ILL32(n, code...) \
    TEST_EXC_NOTVAL(n, CAUSE_ILLEGAL_INSN, code); \
    la t4, 2b; lwu t4, 0(t4); LOAD_TI(t5, TI_TVAL); FAIL_IF_NE2(t5, t4)
/* instruction must not trap */
#define TEST_NOTRAP(n, code...) \
test_##n: li TESTNUM, n; RESET_COUNT; code; CHECK_TI(TI_COUNT, 0)

#define MISA_BITS ((1 << ('I' - 'A')) | (1 << ('M' - 'A')) | (1 << ('A' - 'A')) | \
                   (1 << ('C' - 'A')) | (1 << ('S' - 'A')) | (1 << ('U' - 'A')))

    /* ---- identification CSRs ---- */
    TEST_CASE(1, a0, 2, csrr a0, misa; srli a0, a0, 62)
    TEST_CASE(2, a0, MISA_BITS, csrr a0, misa; li a1, MISA_BITS; and a0, a0, a1)
    TEST_CASE(3, a0, 0, csrr a0, mhartid)
    TEST_NOTRAP(4, csrr a0, mvendorid; csrr a0, marchid; csrr a0, mimpid)

    /* ---- Zicsr read-modify-write semantics (on mscratch) ---- */
    TEST_CASE(5, a0, 0x1234, li a1, 0x1234; csrw mscratch, a1; li a1, 0x5678; csrrw a0, mscratch, a1)
    TEST_CASE(6, a0, 0x5678, csrrs a0, mscratch, zero)
    TEST_CASE(7, a0, 0x5678, li a1, 0x0f0f; csrrs a0, mscratch, a1)
    TEST_CASE(8, a0, 0x5f7f, li a1, 0x00ff; csrrc a0, mscratch, a1)
    TEST_CASE(9, a0, 0x5f00, csrrwi a0, mscratch, 0x1f)
    TEST_CASE(10, a0, 0x1f, csrrsi a0, mscratch, 0x0)
    TEST_CASE(11, a0, 0x1f, csrrci a0, mscratch, 0x5)
    TEST_CASE(12, a0, 0x1e, csrrsi a0, mscratch, 0x4; csrr a0, mscratch)
    TEST_CASE(13, a0, 0xfedcba9876543210, li a1, 0xfedcba9876543210; csrw mscratch, a1; csrr a0, mscratch)
    TEST_CASE(14, a1, 0xfedcba9876543210, csrrw a1, mscratch, a1; csrr a1, mscratch)  /* rd == rs1 */
    TEST_CASE(15, zero, 0, csrrw zero, mscratch, a1)
    /* restore the handler's scratch pointer */
    la t0, m_trap_frame
    csrw mscratch, t0
    /* other writable M CSRs */
    TEST_CASE(16, a0, 0x80001234, li a1, 0x80001234; csrw mepc, a1; csrr a0, mepc)
    TEST_CASE(17, a0, 0xabcdef, li a1, 0xabcdef; csrw mtval, a1; csrr a0, mtval)

    /* ---- synchronous exceptions from M-mode ---- */
    /* mtval is preset to garbage to check it is written with 0 */
    TEST_EXC(18, CAUSE_MACHINE_ECALL, 0, li a1, 0x55; csrw mtval, a1; 2: ecall)
    TEST_EXC(19, CAUSE_BREAKPOINT, 0, li a1, 0x55; csrw mtval, a1; 2: ebreak)
    TEST_EXC(20, CAUSE_BREAKPOINT, 0, li a1, 0x55; csrw mtval, a1; 2: .2byte 0x9002; .2byte 0x0001)   /* c.ebreak (+ c.nop pad) */
    TEST_ILL32(21, 2: .word 0x1234500b)          /* custom-0 opcode */
    TEST_ILL32(22, 2: .word 0x00007003)          /* LOAD funct3=7 (RV128 ldu) */
    TEST_ILL32(23, 2: .word 0x02007053)          /* fadd.d with mstatus.FS = Off (reset) */
    TEST_EXC(24, CAUSE_ILLEGAL_INSN, 0, 2: .2byte 0x0000; .2byte 0x0001)      /* all-zero 16-bit */
    TEST_EXC(25, CAUSE_ILLEGAL_INSN, 4, 2: .2byte 0x0004; .2byte 0x0001)      /* c.addi4spn imm=0 */
    TEST_ILL32(26, 2: csrr a0, 0x7ff)            /* unimplemented CSRs */
    TEST_ILL32(27, li a0, 1; 2: csrw 0x7ff, a0)
    TEST_ILL32(28, 2: csrrs a0, 0x5ff, zero)
    TEST_ILL32(29, 2: csrw mvendorid, zero)      /* write to read-only CSRs */
    TEST_ILL32(30, 2: csrrwi a0, mhartid, 0)
    TEST_ILL32(31, li a0, 1; 2: csrrs a0, marchid, a0)
    TEST_ILL32(32, 2: csrrci a0, mimpid, 1)
    TEST_NOTRAP(33, csrrsi a0, mvendorid, 0; csrrci a0, mhartid, 0; csrrs a0, marchid, zero)
    TEST_ILL32(34, 2: .word 0x30200073 | (1 << 15))    /* mret with rs1 != 0 */
    TEST_ILL32(35, 2: .word 0x10200073 | (1 << 7))     /* sret with rd != 0 */

    /* ---- misaligned accesses: plain loads/stores succeed, AMOs trap (see misaligned.S) ---- */
    TEST_CASE(70, a0, 0x0123456789abcdef, la a1, mdat; li a2, 0x0123456789abcdef; sd a2, 3(a1); ld a0, 3(a1))
    TEST_EXC_NOTVAL(71, CAUSE_MISALIGNED_LOAD, la a1, mdat; addi a1, a1, 2; 2: amoadd.w a0, a0, (a1))
    la t4, mdat + 2
    LOAD_TI(t5, TI_TVAL)
    FAIL_IF_NE2(t5, t4)

    /* ---- access faults on unmapped physical addresses ---- */
    TEST_EXC(36, CAUSE_LOAD_ACCESS, 0x10, li a1, 0x10; 2: ld a0, 0(a1))
    TEST_EXC(37, CAUSE_LOAD_ACCESS, 0, 2: lw a0, 0(zero))
    TEST_EXC(38, CAUSE_STORE_ACCESS, 0x18, li a1, 0x10; 2: sd a0, 8(a1))
    /* QEMU 7.2 (single hart TCG) performs the AMO's load first: LOAD access fault */
    TEST_EXC(39, CAUSE_LOAD_ACCESS, 0x20, li a1, 0x20; 2: amoadd.w a0, a0, (a1))
    TEST_EXC(40, CAUSE_STORE_ACCESS, 0x8, li a1, 0x8; 2: sb a0, 0(a1))
    TEST_EXC(68, CAUSE_LOAD_ACCESS, 0x28, li a1, 0x28; 2: lr.d a0, (a1))
    TEST_EXC(69, CAUSE_LOAD_ACCESS, 0x30, li a1, 0x30; 2: amoswap.d a0, a0, (a1))   /* QEMU 7.2: load fault */
    /* instruction fetch from address 0: mepc = mtval = 0 */
test_41:
    li TESTNUM, 41
    CLEAR_TI
    EXPECT_TRAP(3f)
    li a1, 0
    jalr ra, 0(a1)
2:  j fail
3:  CHECK_TI(TI_CAUSE, CAUSE_FETCH_ACCESS)
    CHECK_TI(TI_EPC, 0)
    CHECK_TI(TI_TVAL, 0)
    la t4, 2b
    FAIL_IF_NE2(ra, t4)

    /* ---- mstatus.MIE/MPIE/MPP across a trap and mret ---- */
    /* (mie = 0 here, so setting MIE cannot take an interrupt) */
test_42:
    li TESTNUM, 42
    csrw mie, zero
    csrsi mstatus, MSTATUS_MIE
    CLEAR_TI
    EXPECT_TRAP(3f)
    ecall
    j fail
3:  LOAD_TI(a0, TI_STATUS)          /* mstatus seen by the handler */
    andi a1, a0, MSTATUS_MIE
    FAIL_IF_NE(a1, 0)
    andi a1, a0, MSTATUS_MPIE
    FAIL_IF_NE(a1, MSTATUS_MPIE)
    li a2, MSTATUS_MPP
    and a1, a0, a2
    FAIL_IF_NE(a1, MSTATUS_MPP)     /* MPP = M */
test_43:
    li TESTNUM, 43
    csrr a0, mstatus                /* after mret */
    andi a1, a0, MSTATUS_MIE
    FAIL_IF_NE(a1, MSTATUS_MIE)     /* MIE <- MPIE */
    andi a1, a0, MSTATUS_MPIE
    FAIL_IF_NE(a1, MSTATUS_MPIE)    /* MPIE <- 1 */
    li a2, MSTATUS_MPP
    and a1, a0, a2
    FAIL_IF_NE(a1, 0)               /* MPP <- U (least privileged) */
test_44:
    li TESTNUM, 44
    csrci mstatus, MSTATUS_MIE
    CLEAR_TI
    EXPECT_TRAP(3f)
    ecall
    j fail
3:  LOAD_TI(a0, TI_STATUS)
    andi a1, a0, MSTATUS_MIE | MSTATUS_MPIE
    FAIL_IF_NE(a1, 0)               /* MPIE <- old MIE = 0 */
    csrr a0, mstatus
    andi a1, a0, MSTATUS_MIE | MSTATUS_MPIE
    FAIL_IF_NE(a1, MSTATUS_MPIE)    /* after mret: MIE = 0, MPIE = 1 */

    /* ---- mret jumps to mepc, in the mode given by MPP ---- */
test_45:
    li TESTNUM, 45
    li a0, 0
    li t0, MSTATUS_MPP
    csrs mstatus, t0                /* MPP = M */
    li t0, MSTATUS_MPIE
    csrs mstatus, t0
    csrci mstatus, MSTATUS_MIE
    la t0, 2f
    csrw mepc, t0
    mret
    j fail
2:  csrr a0, mstatus
    andi a1, a0, MSTATUS_MIE
    FAIL_IF_NE(a1, MSTATUS_MIE)
    csrci mstatus, MSTATUS_MIE
    csrr a1, mhartid                /* still in M-mode: M CSRs accessible */
    FAIL_IF_NE(a1, 0)

    /* ---- counters ---- */
    TEST_CASE(46, a2, 1, csrr a0, minstret; nop; nop; nop; nop; csrr a1, minstret; sltu a2, a0, a1)
    TEST_CASE(47, a2, 1, csrr a0, mcycle; nop; nop; nop; nop; csrr a1, mcycle; sltu a2, a0, a1)
    TEST_CASE(48, a2, 1, rdinstret a0; nop; nop; nop; nop; rdinstret a1; sltu a2, a0, a1)
    TEST_CASE(49, a2, 1, rdcycle a0; nop; nop; nop; nop; rdcycle a1; sltu a2, a0, a1)
    /* minstret is writable: counting continues from the written value */
    TEST_CASE(50, a2, 1, li a0, 0x100000000; csrw minstret, a0; csrr a1, minstret; sltu a2, a1, a0; xori a2, a2, 1)
    TEST_CASE(51, a2, 1, li a0, 0x100000000; csrw mcycle, a0; csrr a1, mcycle; sltu a2, a1, a0; xori a2, a2, 1)
    /* time CSR tracks CLINT mtime (10 MHz): time <= later mtime, difference small */
    TEST_CASE(52, a2, 1, rdtime a0; li t0, CLINT_MTIME; ld a1, 0(t0); sub a1, a1, a0; li t1, 100000; sltu a2, a1, t1)
    TEST_CASE(53, a2, 1, li t0, CLINT_MTIME; ld a0, 0(t0); li a3, 2000; 2: ld a1, 0(t0); addi a3, a3, -1; \
                  beqz a3, fail_far; beq a1, a0, 2b; sltu a2, a0, a1)

    /* ---- machine timer interrupt, taken from wfi ---- */
test_54:
    li TESTNUM, 54
    li t0, CLINT_MTIMECMP
    li t1, -1
    sd t1, 0(t0)
    csrr a0, mip
    andi a0, a0, MIP_MTIP
    FAIL_IF_NE(a0, 0)               /* mtimecmp = max: MTIP clear */
test_55:
    /* MIE = 1, mtimecmp = now + 10 ms, wfi: the interrupt is taken after the wfi */
    li TESTNUM, 55
    li t0, MIP_MTIP
    csrw mie, t0
    RESET_COUNT
    CLEAR_TI
    csrsi mstatus, MSTATUS_MIE
    li a3, 1000
    li t0, CLINT_MTIME
    ld t1, 0(t0)
    li t2, 100000
    add t1, t1, t2
    li t0, CLINT_MTIMECMP
    sd t1, 0(t0)
2:  wfi
    LOAD_TI(a0, TI_COUNT)
    bnez a0, 3f
    addi a3, a3, -1                 /* spurious wake-up: sleep again */
    bnez a3, 2b
    j fail
3:  csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_CAUSE, INT_BIT | 7)
    CHECK_TI(TI_TVAL, 0)
    LOAD_TI(a0, TI_STATUS)
    andi a1, a0, MSTATUS_MIE | MSTATUS_MPIE
    FAIL_IF_NE(a1, MSTATUS_MPIE)
    csrr a0, mip
    andi a0, a0, MIP_MTIP
    FAIL_IF_NE(a0, 0)               /* handler set mtimecmp = max */
test_56:
    /* mepc of the interrupt is the instruction after the wfi */
    li TESTNUM, 56
    LOAD_TI(a0, TI_EPC)
    la a1, 2b + 4
    FAIL_IF_NE2(a0, a1)

    /* ---- wfi with mstatus.MIE = 0 wakes up on a pending enabled interrupt, no trap ---- */
test_57:
    li TESTNUM, 57
    RESET_COUNT
    li t0, CLINT_MTIME
    ld t1, 0(t0)
    addi t1, t1, 500
    li t0, CLINT_MTIMECMP
    sd t1, 0(t0)
    li t0, MIP_MTIP
    csrw mie, t0
    li a3, 100000
2:  wfi
    csrr a0, mip
    andi a0, a0, MIP_MTIP
    bnez a0, 3f
    addi a3, a3, -1
    bnez a3, 2b
    j fail
3:  CHECK_TI(TI_COUNT, 0)
test_58:
    /* MTIP is read-only in mip */
    li TESTNUM, 58
    li t0, MIP_MTIP
    csrc mip, t0
    csrr a0, mip
    andi a0, a0, MIP_MTIP
    FAIL_IF_NE(a0, MIP_MTIP)
test_59:
    /* setting MIE takes the pending interrupt right after the csr write */
    li TESTNUM, 59
    CLEAR_TI
    csrsi mstatus, MSTATUS_MIE
2:  nop
    csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_CAUSE, INT_BIT | 7)
    la t4, 2b
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)

    /* ---- machine software interrupt via CLINT msip ---- */
test_60:
    li TESTNUM, 60
    csrw mie, zero
    RESET_COUNT
    li t0, CLINT_MSIP
    li t1, 1
    sw t1, 0(t0)
    csrr a0, mip
    andi a0, a0, MIP_MSIP
    FAIL_IF_NE(a0, MIP_MSIP)
    lw a0, 0(t0)
    FAIL_IF_NE(a0, 1)
test_61:
    /* MIE = 1 but mie.MSIE = 0: not taken */
    li TESTNUM, 61
    csrsi mstatus, MSTATUS_MIE
    nop
    nop
    csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_COUNT, 0)
test_62:
    li TESTNUM, 62
    CLEAR_TI
    li t0, MIP_MSIP
    csrs mie, t0                    /* MIE = 0: still not taken */
    nop
    CHECK_TI(TI_COUNT, 0)
    csrsi mstatus, MSTATUS_MIE
2:  nop
    csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_CAUSE, INT_BIT | 3)
    la t4, 2b
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    csrr a0, mip
    andi a0, a0, MIP_MSIP
    FAIL_IF_NE(a0, 0)               /* handler wrote msip = 0 */
    li t0, CLINT_MSIP
    lw a0, 0(t0)
    FAIL_IF_NE(a0, 0)
test_63:
    /* MSIP is read-only in mip (set/cleared only through the CLINT) */
    li TESTNUM, 63
    li t0, MIP_MSIP
    csrs mip, t0
    csrr a0, mip
    andi a0, a0, MIP_MSIP
    FAIL_IF_NE(a0, 0)

    /* ---- priority: MSI before MTI when both pending ---- */
test_64:
    li TESTNUM, 64
    csrw mie, zero
    RESET_COUNT
    li t0, CLINT_MTIMECMP
    sd zero, 0(t0)                  /* MTIP pending now */
    li t0, CLINT_MSIP
    li t1, 1
    sw t1, 0(t0)
    li t0, MIP_MSIP | MIP_MTIP
    csrw mie, t0
    csrsi mstatus, MSTATUS_MIE
    nop
    nop
    csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_COUNT, 2)
    CHECK_LOG(1, INT_BIT | 3)
    CHECK_LOG(2, INT_BIT | 7)

    /* ---- vectored mtvec: interrupts go to base + 4*cause, exceptions to base ---- */
test_65:
    li TESTNUM, 65
    csrw mie, zero
    la t0, vec_table
    ori t0, t0, 1
    csrw mtvec, t0
    csrr a0, mtvec
    FAIL_IF_NE2(a0, t0)
    la t0, m_trap_frame
    li t1, -1
    sd t1, 32(t0)
    li t0, CLINT_MSIP
    li t1, 1
    sw t1, 0(t0)
    li t0, MIP_MSIP
    csrw mie, t0
    csrsi mstatus, MSTATUS_MIE
    nop
    csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_CAUSE, INT_BIT | 3)
    la t0, m_trap_frame
    ld a0, 32(t0)
    FAIL_IF_NE(a0, 3)
test_66:
    li TESTNUM, 66
    CLEAR_TI
    EXPECT_TRAP(3f)
    ecall
    j fail
3:  CHECK_TI(TI_CAUSE, CAUSE_MACHINE_ECALL)
    la t0, m_trap_frame
    ld a0, 32(t0)
    FAIL_IF_NE(a0, 0)
test_67:
    li TESTNUM, 67
    li t0, CLINT_MTIMECMP
    sd zero, 0(t0)
    li t0, MIP_MTIP
    csrw mie, t0
    csrsi mstatus, MSTATUS_MIE
    nop
    csrci mstatus, MSTATUS_MIE
    CHECK_TI(TI_CAUSE, INT_BIT | 7)
    la t0, m_trap_frame
    ld a0, 32(t0)
    FAIL_IF_NE(a0, 7)
    csrw mie, zero
    la t0, m_trap_vector
    csrw mtvec, t0
    csrr a0, mtvec
    FAIL_IF_NE2(a0, t0)

TEST_END

fail_far:
    j fail

    .data
    .balign 8
mdat:
    .dword 0, 0

/* vectored trap table: each entry records its index, then runs the normal handler */
#define VEC_STUB(k) vec_stub_##k: csrrw sp, mscratch, sp; sd t0, 24(sp); li t0, k; sd t0, 32(sp); \
    ld t0, 24(sp); csrrw sp, mscratch, sp; j m_trap_vector

    .align 8
vec_table:
    j vec_stub_0
    j vec_stub_1
    j vec_stub_2
    j vec_stub_3
    j vec_stub_4
    j vec_stub_5
    j vec_stub_6
    j vec_stub_7
    j vec_stub_8
    j vec_stub_9
    j vec_stub_10
    j vec_stub_11
    VEC_STUB(0)
    VEC_STUB(1)
    VEC_STUB(2)
    VEC_STUB(3)
    VEC_STUB(4)
    VEC_STUB(5)
    VEC_STUB(6)
    VEC_STUB(7)
    VEC_STUB(8)
    VEC_STUB(9)
    VEC_STUB(10)
    VEC_STUB(11)
