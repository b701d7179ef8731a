/*
 * rv64uf: the F and D state around the arithmetic (rv64fd-ops checks the arithmetic itself).
 * misa F and D; mstatus.FS Off makes FP instructions (32-bit and compressed, loads, moves) and
 * the FP CSRs illegal with mtval = the instruction bits; Initial/Clean become Dirty on an f
 * register write or an fcsr write, SD follows FS == Dirty, sstatus shows both; fflags, frm and
 * fcsr are views of one register; reserved static rounding modes and a reserved frm with a
 * dynamic rounding mode are illegal; flags accrue; NaN-boxing on loads, moves and single
 * operands; flw/fsw/fld/fsd and the compressed c.fld/c.fsd/c.fldsp/c.fsdsp; FP from S and U
 * (FS = Off traps to S when delegated, S enables FP through sstatus).
 */
#define TEST_NAME "rv64uf"
#include "env.h"

#define MSTATUS_FS      0x6000
#define MSTATUS_FS_INIT 0x2000
#define MSTATUS_FS_CLEAN 0x4000
#define SET_FS(v) li t0, MSTATUS_FS; csrc mstatus, t0; li t0, v; csrs mstatus, t0
#define EXPECT_ILLEGAL(n, insn...) \
    li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(1f); insn; j fail; 1: CHECK_TI(TI_CAUSE, CAUSE_ILLEGAL_INSN)

    /* ---- misa: F (bit 5) and D (bit 3) */
    TEST_CASE(1, a0, 0x28, csrr a0, misa; andi a0, a0, 0x28)

    /* ---- FS = Off at reset: everything FP is illegal, mtval = the instruction */
    TEST_CASE(2, a0, 0, csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    EXPECT_ILLEGAL(3, .word 0x02b57553)       /* fadd.d fa0, fa0, fa1 */
    CHECK_TI(TI_TVAL, 0x02b57553)
    EXPECT_ILLEGAL(4, .word 0x0005a507)       /* flw fa0, 0(a1) */
    CHECK_TI(TI_TVAL, 0x0005a507)
    EXPECT_ILLEGAL(5, .half 0x2188)           /* c.fld fa0, 0(a1) */
    CHECK_TI(TI_TVAL, 0x2188)
    EXPECT_ILLEGAL(6, .word 0xe2050553)       /* fmv.x.d a0, fa0 */
    CHECK_TI(TI_TVAL, 0xe2050553)
    EXPECT_ILLEGAL(7, .word 0x00102573)       /* csrr a0, fflags */
    CHECK_TI(TI_TVAL, 0x00102573)
    EXPECT_ILLEGAL(8, .word 0x00301073)       /* csrw fcsr, zero */
    CHECK_TI(TI_TVAL, 0x00301073)
    EXPECT_ILLEGAL(9, .half 0xa002)           /* c.fsdsp f0, 0(sp) */
    CHECK_TI(TI_TVAL, 0xa002)

    /* ---- FS = Initial: reads keep it, an f write makes it Dirty, SD follows */
    SET_FS(MSTATUS_FS_INIT)
    TEST_CASE(10, a0, 0, csrr a0, fcsr)
    TEST_CASE(11, a0, MSTATUS_FS_INIT, csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    TEST_CASE(12, a0, 0, csrr a0, mstatus; srli a0, a0, 63)
    TEST_CASE(13, a0, 0x1234, li a1, 0x1234; fmv.d.x fa0, a1; fmv.x.d a0, fa0)
    TEST_CASE(14, a0, MSTATUS_FS, csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    TEST_CASE(15, a0, 1, csrr a0, mstatus; srli a0, a0, 63)
    TEST_CASE(16, a0, 1, csrr a0, sstatus; srli a0, a0, 63)
    TEST_CASE(17, a0, MSTATUS_FS, csrr a0, sstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    /* sstatus writes FS too */
    TEST_CASE(18, a0, MSTATUS_FS_CLEAN, li a1, MSTATUS_FS; csrc sstatus, a1; li a1, MSTATUS_FS_CLEAN; csrs sstatus, a1; \
        csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    TEST_CASE(19, a0, 0, csrr a0, mstatus; srli a0, a0, 63)
    /* Clean: an fcsr write makes it Dirty; a load does too */
    TEST_CASE(20, a0, MSTATUS_FS, csrwi fflags, 1; csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    SET_FS(MSTATUS_FS_CLEAN)
    TEST_CASE(21, a0, MSTATUS_FS, la a1, fdata; fld fa1, 0(a1); csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)
    SET_FS(MSTATUS_FS_CLEAN)
    TEST_CASE(22, a0, MSTATUS_FS, csrwi frm, 2; csrr a0, mstatus; li a1, MSTATUS_FS; and a0, a0, a1)

    /* ---- fflags, frm and fcsr: one register */
    TEST_CASE(23, a0, 0xff, li a1, 0xfff; csrw fcsr, a1; csrr a0, fcsr)
    TEST_CASE(24, a0, 0x1f, csrr a0, fflags)
    TEST_CASE(25, a0, 7, csrr a0, frm)
    TEST_CASE(26, a0, 0x5f, csrwi frm, 2; csrr a0, fcsr)
    TEST_CASE(27, a0, 0x43, csrwi fflags, 3; csrr a0, fcsr)
    TEST_CASE(28, a0, 0x43, li a1, 0x1e0; csrrw a0, fcsr, zero)
    TEST_CASE(29, a0, 0, csrr a0, fcsr)

    /* ---- flags accrue (OR) until written */
    TEST_CASE(30, a0, 0x08, li a1, 0x3ff0000000000000; fmv.d.x fa0, a1; fmv.d.x fa1, zero; fdiv.d fa2, fa0, fa1; csrr a0, fflags)
    TEST_CASE(31, a0, 0x18, fmv.d.x fa3, zero; fdiv.d fa2, fa3, fa1; csrr a0, fflags)
    TEST_CASE(32, a0, 0x19, li a1, 0x4008000000000000; fmv.d.x fa1, a1; fdiv.d fa2, fa0, fa1; csrr a0, fflags)
    TEST_CASE(33, a0, 0x19, fadd.d fa2, fa0, fa0; csrr a0, fflags)
    csrw fflags, zero

    /* ---- rounding modes: reserved static ones and a reserved frm with dyn are illegal */
    li a1, 0x3ff0000000000000
    fmv.d.x fa0, a1
    fmv.d.x fa1, a1
    EXPECT_ILLEGAL(34, .word 0x02b5d553)      /* fadd.d fa0, fa1, fa1, rm=5 */
    CHECK_TI(TI_TVAL, 0x02b5d553)
    EXPECT_ILLEGAL(35, .word 0x02b5e553)      /* rm=6 */
    CHECK_TI(TI_TVAL, 0x02b5e553)
    csrwi frm, 5
    EXPECT_ILLEGAL(36, .word 0x02b5f553)      /* rm=7 (dyn), frm=5 */
    CHECK_TI(TI_TVAL, 0x02b5f553)
    csrwi frm, 7
    EXPECT_ILLEGAL(37, fadd.d fa0, fa1, fa1, dyn)
    csrwi frm, 6
    EXPECT_ILLEGAL(38, fcvt.w.d a0, fa1, dyn)
    /* instructions without a rounding mode do not care about frm */
    TEST_CASE(39, a0, 1, feq.d a0, fa0, fa1)
    TEST_CASE(40, a0, 0x3ff0000000000000, fsgnj.d fa2, fa0, fa1; fmv.x.d a0, fa2)
    /* a static mode ignores frm */
    TEST_CASE(41, a0, 0x4000000000000000, fadd.d fa2, fa0, fa1, rne; fmv.x.d a0, fa2)
    /* dyn follows frm: 1/3 rounds down under RDN and up under RUP */
    li a1, 0x4008000000000000
    fmv.d.x fa3, a1
    TEST_CASE(42, a0, 0x3fd5555555555555, csrwi frm, 2; fdiv.d fa2, fa0, fa3; fmv.x.d a0, fa2)
    TEST_CASE(43, a0, 0x3fd5555555555556, csrwi frm, 3; fdiv.d fa2, fa0, fa3; fmv.x.d a0, fa2)
    TEST_CASE(44, a0, 0x3fd5555555555555, csrwi frm, 0; fdiv.d fa2, fa0, fa3, dyn; fmv.x.d a0, fa2)
    csrw fcsr, zero

    /* ---- NaN-boxing */
    TEST_CASE(45, a0, 0xffffffff3f800000, li a1, 0x3f800000; fmv.w.x fa0, a1; fmv.x.d a0, fa0)
    TEST_CASE(46, a0, 0xffffffffbf800000, li a1, 0x12345678bf800000; fmv.w.x fa0, a1; fmv.x.d a0, fa0)
    TEST_CASE(47, a0, 0xffffffffbf800000, fmv.x.w a0, fa0)
    /* fmv.x.w takes the low 32 bits as they are, boxed or not */
    TEST_CASE(48, a0, 0x000000007f800001, li a1, 0x123456787f800001; fmv.d.x fa0, a1; fmv.x.w a0, fa0)
    /* an unboxed operand is the canonical NaN */
    TEST_CASE(49, a0, 0xffffffff7fc00000, li a1, 0x000000003f800000; fmv.d.x fa0, a1; fadd.s fa1, fa0, fa0; fmv.x.d a0, fa1)
    TEST_CASE(50, a0, 0x200, fclass.s a0, fa0)
    TEST_CASE(51, a0, 0xffffffff3f800000, li a1, 0x3f800000; fmv.w.x fa2, a1; fmin.s fa1, fa0, fa2; fmv.x.d a0, fa1)
    TEST_CASE(52, a0, 0xffffffffffc00000, fsgnjn.s fa1, fa0, fa2; fmv.x.d a0, fa1)
    /* flw boxes; fsw stores the low 32 bits as they are */
    TEST_CASE(53, a0, 0xffffffff89abcdef, la a1, fdata; flw fa0, 0(a1); fmv.x.d a0, fa0)
    TEST_CASE(54, a0, 0x0000000044444444, la a1, fbuf; sd zero, 0(a1); li a2, 0x3333333344444444; fmv.d.x fa0, a2; \
        fsw fa0, 0(a1); ld a0, 0(a1))
    csrw fflags, zero

    /* ---- loads and stores */
    TEST_CASE(55, a0, 0x0123456789abcdef, la a1, fdata; fld fa0, 0(a1); fmv.x.d a0, fa0)
    TEST_CASE(56, a0, 0xfedcba9876543210, la a1, fdata; fld fa0, 8(a1); fmv.x.d a0, fa0)
    TEST_CASE(57, a0, 0xfedcba9876543210, la a1, fbuf; fsd fa0, 16(a1); ld a0, 16(a1))
    TEST_CASE(58, a0, 0xffffffff01234567, la a1, fdata; addi a1, a1, 8; flw fa0, -4(a1); fmv.x.d a0, fa0)
    /* compressed forms (c.fld/c.fsd: x8-x15 and f8-f15; c.fldsp/c.fsdsp: sp, any f) */
    TEST_CASE(59, a0, 0x0123456789abcdef, la s0, fdata; c.fld fs0, 0(s0); fmv.x.d a0, fs0)
    TEST_CASE(60, a0, 0xfedcba9876543210, la s0, fdata; c.fld fa5, 8(s0); fmv.x.d a0, fa5)
    TEST_CASE(61, a0, 0x0123456789abcdef, la s0, fbuf; c.fsd fs0, 24(s0); ld a0, 24(s0))
    TEST_CASE(62, a0, 0xfedcba9876543210, mv s1, sp; la sp, fdata; c.fldsp ft11, 8(sp); mv sp, s1; fmv.x.d a0, ft11)
    TEST_CASE(63, a0, 0x0123456789abcdef, mv s1, sp; la sp, fdata; c.fldsp f0, 0(sp); mv sp, s1; fmv.x.d a0, f0)
    TEST_CASE(64, a0, 0xfedcba9876543210, mv s1, sp; la sp, fbuf; c.fsdsp ft11, 32(sp); mv sp, s1; la a1, fbuf; ld a0, 32(a1))
    /* misaligned (QEMU allows it) */
    TEST_CASE(65, a0, 0xdcba987654321001, la a1, fdata; fld fa0, 7(a1); fmv.x.d a0, fa0)

    /* ---- back to Off: illegal again */
    SET_FS(0)
    EXPECT_ILLEGAL(66, fmv.d.x fa0, zero)
    EXPECT_ILLEGAL(67, csrr a0, frm)
    TEST_CASE(68, a0, 0, csrr a0, mstatus; srli a0, a0, 63)

    /* ---- S and U: an FP instruction with FS = Off traps to S when delegated (stval = bits);
     * S turns FP on through sstatus; U then computes and reads fflags */
    PMP_OPEN_ALL
    la t0, s_trap_vector
    csrw stvec, t0
    la t0, s_trap_frame
    csrw sscratch, t0
    li t0, (1 << CAUSE_ILLEGAL_INSN) | (1 << CAUSE_USER_ECALL)
    csrw medeleg, t0
    MRET_TO(u_fp, PRV_U)
u_fp:
    EXPECT_ILLEGAL(69, .word 0xf2000553)          /* fmv.d.x fa0, zero */
    CHECK_TI(TI_MODE, 1)
    CHECK_TI(TI_TVAL, 0xf2000553)
    EXPECT_ILLEGAL(70, .word 0x00302573)          /* csrr a0, fcsr */
    CHECK_TI(TI_MODE, 1)
    li TESTNUM, 71
    EXPECT_TRAP_PRIV(s_fp, PRV_S)
    ecall
s_fp:
    TEST_CASE(72, a0, 0, li t0, MSTATUS_FS_INIT; csrs sstatus, t0; csrr a0, fcsr)
    TEST_CASE(73, a0, 1, li a1, 0x3ff0000000000000; fmv.d.x fa0, a1; csrr a0, sstatus; srli a0, a0, 63)
    SRET_TO(u_fp2, PRV_U)
u_fp2:
    TEST_CASE(74, a0, 0x4000000000000000, fadd.d fa1, fa0, fa0; fmv.x.d a0, fa1)
    TEST_CASE(75, a0, 0x01, li a1, 0x4008000000000000; fmv.d.x fa2, a1; fdiv.d fa1, fa0, fa2; frflags a0)

    TEST_END

    .data
    .align 4
fdata:
    .dword 0x0123456789abcdef
    .dword 0xfedcba9876543210
    .dword 0
fbuf:
    .skip 64
