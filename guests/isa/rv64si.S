/*
 * rv64si: supervisor and user mode (no paging).  mret to S and U, ecall
 * from S (cause 9) and U (cause 8), CSR privilege checks (M CSRs from S,
 * S CSRs from U, mret/sret/wfi privilege, mcounteren/scounteren gating of
 * cycle/time/instret, mstatus.TSR/TW/TVM), exception delegation through
 * medeleg (to stvec with scause/sepc/stval, SPP/SPIE/SIE), sret, traps
 * from M never delegated, sstatus as a view of mstatus, sie/sip as views of
 * mie/mip under mideleg, supervisor software interrupt (mip.SSIP set by M,
 * sip.SSIP set by S, always enabled in U), S-mode timer interrupt via
 * mip.STIP set by M, non-delegated interrupts taken in M from S/U even with
 * mstatus.MIE = 0.
 */
#define TEST_NAME "rv64si"
#include "env.h"

/* expect an exception at label 2 in `code`, handled in `mode` (3 = M, 1 = S) */
#define TEST_EXC(n, mode, cause, code...) \
test_##n: li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(3f); code; j fail; 3: \
    CHECK_TI(TI_CAUSE, cause); la t4, 2b; LOAD_TI(t5, TI_EPC); FAIL_IF_NE2(t5, t4); \
    CHECK_TI(TI_MODE, mode)
/* illegal instruction: tval = instruction bits */
#define TEST_ILL(n, mode, code...) \
    TEST_EXC(n, mode, CAUSE_ILLEGAL_INSN, code); \
    la t4, 2b; lwu t4, 0(t4); LOAD_TI(t5, TI_TVAL); FAIL_IF_NE2(t5, t4)
#define TEST_NOTRAP(n, code...) \
test_##n: li TESTNUM, n; RESET_COUNT; code; CHECK_TI(TI_COUNT, 0)
/* previous privilege recorded by the handler */
#define CHECK_MPP(p) LOAD_TI(t5, TI_STATUS); srli t5, t5, 11; andi t5, t5, 3; FAIL_IF_NE(t5, p)
#define CHECK_SPP(p) LOAD_TI(t5, TI_STATUS); srli t5, t5, 8; andi t5, t5, 1; FAIL_IF_NE(t5, p)

#define SSTATUS_VIEW (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR)
#define MSTATUS_TVM (1 << 20)
#define MSTATUS_TW  (1 << 21)
#define MSTATUS_TSR (1 << 22)
#define S_INTS (MIP_SSIP | MIP_STIP | MIP_SEIP)

    PMP_OPEN_ALL
    la t0, s_trap_vector
    csrw stvec, t0
    la t0, s_trap_frame
    csrw sscratch, t0
    csrw medeleg, zero
    csrw mideleg, zero
    csrw mie, zero
    csrw mcounteren, zero
    csrw scounteren, zero

    /* ================= S-mode, nothing delegated ================= */
    TEST_CASE(1, a0, 0, csrr a0, stvec; la t1, s_trap_vector; sub a0, a0, t1)
    li TESTNUM, 2
    MRET_TO(s_start, PRV_S)
s_start:
    TEST_ILL(3, 3, 2: csrr a0, mstatus)
    CHECK_MPP(PRV_S)
    TEST_ILL(4, 3, 2: csrr a0, mscratch)
    TEST_ILL(5, 3, li a0, 0; 2: csrw mepc, a0)
    TEST_ILL(6, 3, 2: csrr a0, mhartid)
    TEST_ILL(7, 3, 2: mret)
    TEST_EXC(8, 3, CAUSE_SUPERVISOR_ECALL, 2: ecall)
    CHECK_MPP(PRV_S)
    CHECK_TI(TI_TVAL, 0)
    /* S CSRs are accessible */
    TEST_CASE(9, a0, 0x1234, csrr t1, sscratch; li a1, 0x1234; csrw sscratch, a1; csrr a0, sscratch; csrw sscratch, t1)
    TEST_CASE(10, a0, 0x80004444, li a1, 0x80004444; csrw sepc, a1; csrr a0, sepc)
    TEST_CASE(11, a0, 0x4321, li a1, 0x4321; csrw stval, a1; csrr a0, stval)
    TEST_CASE(12, a0, 5, li a1, 5; csrw scause, a1; csrr a0, scause)
    TEST_CASE(13, a0, 0, csrr a0, satp)
    TEST_NOTRAP(14, sfence.vma)
    /* counters: mcounteren = 0 -> illegal in S */
    TEST_ILL(15, 3, 2: rdcycle a0)
    TEST_ILL(16, 3, 2: rdtime a0)
    TEST_ILL(17, 3, 2: rdinstret a0)
    GOTO_M(m_1)
m_1:
    li t0, 7
    csrw mcounteren, t0
    li t0, MSTATUS_TSR | MSTATUS_TW | MSTATUS_TVM
    csrs mstatus, t0
    MRET_TO(s_1, PRV_S)
s_1:
    TEST_NOTRAP(18, rdcycle a0; rdtime a0; rdinstret a0)
    /* TSR / TW / TVM */
    TEST_ILL(19, 3, 2: sret)
    TEST_ILL(20, 3, 2: wfi)
    TEST_ILL(21, 3, 2: csrr a0, satp)
    TEST_ILL(22, 3, 2: sfence.vma)
    GOTO_M(m_2)
m_2:
    li t0, MSTATUS_TSR | MSTATUS_TW | MSTATUS_TVM
    csrc mstatus, t0

    /* ================= U-mode, nothing delegated ================= */
    MRET_TO(u_1, PRV_U)
u_1:
    TEST_EXC(23, 3, CAUSE_USER_ECALL, 2: ecall)
    CHECK_MPP(PRV_U)
    TEST_ILL(24, 3, 2: csrr a0, sstatus)
    TEST_ILL(25, 3, 2: csrw sscratch, zero)
    TEST_ILL(26, 3, 2: sret)
    TEST_ILL(27, 3, 2: mret)
    TEST_ILL(28, 3, 2: wfi)
    TEST_ILL(29, 3, 2: sfence.vma)
    /* mcounteren = 7, scounteren = 0 -> illegal in U */
    TEST_ILL(30, 3, 2: rdcycle a0)
    GOTO_M(m_3)
m_3:
    li t0, 7
    csrw scounteren, t0
    csrw mcounteren, zero
    MRET_TO(u_2a, PRV_U)
u_2a:
    /* mcounteren = 0, scounteren = 7 -> still illegal in U */
    TEST_ILL(73, 3, 2: rdtime a0)
    GOTO_M(m_3a)
m_3a:
    li t0, 7
    csrw mcounteren, t0
    MRET_TO(u_2, PRV_U)
u_2:
    TEST_NOTRAP(31, rdcycle a0; rdtime a0; rdinstret a0)
    GOTO_M(m_4)
m_4:
    /* ================= delegation ================= */
    TEST_CASE(32, a0, 0xb3ff, li a1, 0xb3ff; csrw medeleg, a1; csrr a0, medeleg; and a0, a0, a1)
    li t0, (1 << CAUSE_USER_ECALL) | (1 << CAUSE_ILLEGAL_INSN) | (1 << CAUSE_BREAKPOINT)
    csrw medeleg, t0
    li t0, 0x99
    csrw stval, t0
    MRET_TO(u_3, PRV_U)
u_3:
    TEST_EXC(33, 1, CAUSE_USER_ECALL, 2: ecall)   /* delegated ecall (stval preset to 0x99) */
    CHECK_SPP(PRV_U)
    CHECK_TI(TI_TVAL, 0)
    TEST_ILL(34, 1, 2: csrr a0, sstatus)   /* delegated illegal instruction: stval = bits */
    CHECK_SPP(PRV_U)
    TEST_EXC(35, 1, CAUSE_BREAKPOINT, 2: ebreak)
    /* go to S through a delegated ecall */
    li TESTNUM, 36
    EXPECT_TRAP_PRIV(s_2, PRV_S)
    ecall
    j fail
s_2:
    CHECK_TI(TI_MODE, 1)
    TEST_ILL(37, 1, 2: csrr a0, mstatus)   /* S -> S */
    CHECK_SPP(PRV_S)
    TEST_EXC(38, 3, CAUSE_SUPERVISOR_ECALL, 2: ecall)  /* not delegated -> M */
    CHECK_MPP(PRV_S)
    /* sstatus SIE/SPIE/SPP across a trap into S and sret */
test_39:
    li TESTNUM, 39
    csrsi sstatus, MSTATUS_SIE      /* sie = 0: no S interrupt can fire */
    CLEAR_TI
    EXPECT_TRAP(3f)
    csrr a0, mstatus
    j fail
3:  LOAD_TI(a0, TI_STATUS)
    andi a1, a0, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP
    FAIL_IF_NE(a1, MSTATUS_SPIE | MSTATUS_SPP)
    csrr a0, sstatus
    andi a1, a0, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP
    FAIL_IF_NE(a1, MSTATUS_SIE | MSTATUS_SPIE)      /* after sret: SIE <- SPIE, SPIE <- 1, SPP <- U */
    csrci sstatus, MSTATUS_SIE
    /* sret to U */
test_40:
    li TESTNUM, 40
    SRET_TO(u_4, PRV_U)
u_4:
    TEST_ILL(41, 1, 2: csrr a0, sscratch)
    CHECK_SPP(PRV_U)
    li TESTNUM, 42
    EXPECT_TRAP_PRIV(s_3, PRV_S)
    ecall
    j fail
s_3:
    GOTO_M(m_5)
m_5:
    /* exceptions in M are never delegated */
    TEST_ILL(43, 3, 2: csrr a0, 0x7ff)
    TEST_EXC(44, 3, CAUSE_BREAKPOINT, 2: ebreak)
    csrw medeleg, zero

    /* ================= sstatus / sie / sip views ================= */
    TEST_CASE(45, a0, SSTATUS_VIEW, li t0, SSTATUS_VIEW; csrs mstatus, t0; csrr a0, sstatus; and a0, a0, t0)
    TEST_CASE(46, a0, 0, li t0, SSTATUS_VIEW; csrc sstatus, t0; csrr a0, mstatus; and a0, a0, t0)
    TEST_CASE(47, a0, 0, li t0, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP; csrs mstatus, t0; \
                        csrr a0, sstatus; and a0, a0, t0)
    TEST_CASE(48, a0, 0, li t0, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP; csrc mstatus, t0; \
                        csrs sstatus, t0; csrr a0, mstatus; and a0, a0, t0)
    /* not delegated: sie/sip bits read as zero, sie writes ignored */
    TEST_CASE(49, a0, 0, csrw mideleg, zero; li t0, S_INTS; csrs sie, t0; csrr a0, sie)
    TEST_CASE(50, a0, 0, csrr a0, mie)
    TEST_CASE(51, a0, 0, li t0, MIP_SSIP; csrs mip, t0; csrr a0, sip; csrc mip, t0)
    /* delegated */
    TEST_CASE(52, a0, S_INTS, li t0, S_INTS; csrw mideleg, t0; csrr a0, mideleg; and a0, a0, t0)
    TEST_CASE(53, a0, MIP_SSIP, li t0, MIP_SSIP; csrs sie, t0; csrr a0, mie)
    TEST_CASE(54, a0, MIP_SSIP, li t0, MIP_MTIP; csrs mie, t0; csrr a0, sie)       /* MTIE not visible */
    TEST_CASE(55, a0, 0, li t0, MIP_SSIP | MIP_MTIP; csrc mie, t0; csrr a0, sie)
    TEST_CASE(56, a0, MIP_SSIP, li t0, MIP_SSIP; csrs mip, t0; csrr a0, sip; andi a0, a0, S_INTS)
    TEST_CASE(57, a0, 0, li t0, MIP_SSIP; csrc sip, t0; csrr a0, mip; andi a0, a0, MIP_SSIP)  /* SSIP writable via sip */
    TEST_CASE(58, a0, MIP_STIP, li t0, MIP_STIP; csrs mip, t0; csrc sip, t0; csrr a0, sip; andi a0, a0, S_INTS) /* STIP read-only in sip */
    TEST_CASE(59, a0, 0, li t0, MIP_STIP; csrc mip, t0; csrr a0, sip; andi a0, a0, S_INTS)
    TEST_CASE(60, a0, 0, csrr a0, sip; andi a0, a0, MIP_MTIP | MIP_MSIP)               /* M bits not visible */

    /* ================= supervisor software interrupt ================= */
test_61:
    /* delegated interrupt pending + enabled in mie is not taken in M, even with MIE = 1 */
    li TESTNUM, 61
    RESET_COUNT
    li t0, MIP_SSIP
    csrw mie, t0
    csrs mip, t0
    csrsi mstatus, MSTATUS_MIE | MSTATUS_SIE
    nop
    nop
    csrci mstatus, MSTATUS_MIE | MSTATUS_SIE
    CHECK_TI(TI_COUNT, 0)
    li TESTNUM, 62
    MRET_TO(s_4, PRV_S)             /* SIE = 0 */
s_4:
    nop
    CHECK_TI(TI_COUNT, 0)           /* S with SIE = 0: not taken */
test_63:
    li TESTNUM, 63
    CLEAR_TI
    csrsi sstatus, MSTATUS_SIE
2:  nop
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_MODE, 1)
    CHECK_TI(TI_CAUSE, INT_BIT | 1)
    CHECK_TI(TI_TVAL, 0)
    la t4, 2b
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    CHECK_SPP(PRV_S)
    LOAD_TI(t5, TI_STATUS)
    andi t5, t5, MSTATUS_SPIE | MSTATUS_SIE
    FAIL_IF_NE(t5, MSTATUS_SPIE)
    csrr a0, sip
    andi a0, a0, MIP_SSIP
    FAIL_IF_NE(a0, 0)               /* handler cleared sip.SSIP */
    csrr a0, sstatus
    andi a0, a0, MSTATUS_SIE
    FAIL_IF_NE(a0, MSTATUS_SIE)
test_64:
    /* S sets its own software interrupt */
    li TESTNUM, 64
    li t0, MIP_SSIP
    csrs sie, t0
    li t0, MIP_SSIP
    csrs sip, t0
2:  nop
    csrci sstatus, MSTATUS_SIE
    CHECK_TI(TI_COUNT, 2)
    CHECK_TI(TI_CAUSE, INT_BIT | 1)
    la t4, 2b
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
test_65:
    /* in U, S-level interrupts are enabled regardless of sstatus.SIE */
    li TESTNUM, 65
    li t0, MIP_SSIP
    csrs sie, t0
    li t0, MIP_SSIP
    csrs sip, t0                    /* pending, SIE = 0: not taken in S */
    nop
    CHECK_TI(TI_COUNT, 2)
    SRET_TO(u_5, PRV_U)             /* SPIE = 0, so SIE stays 0 */
u_5:
    nop
    CHECK_TI(TI_COUNT, 3)
    CHECK_TI(TI_CAUSE, INT_BIT | 1)
    CHECK_TI(TI_MODE, 1)
    CHECK_SPP(PRV_U)
    la t4, u_5
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    li TESTNUM, 66
    GOTO_M(m_6)                     /* ecall from U is not delegated now */
m_6:

    /* ================= S-mode timer interrupt via mip.STIP ================= */
test_67:
    li TESTNUM, 67
    RESET_COUNT
    li t0, MIP_STIP
    csrw mie, t0
    csrs mip, t0
    MRET_TO(s_5, PRV_S)
s_5:
    nop
    CHECK_TI(TI_COUNT, 0)
    csrsi sstatus, MSTATUS_SIE
2:  nop
    csrci sstatus, MSTATUS_SIE
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_MODE, 1)
    CHECK_TI(TI_CAUSE, INT_BIT | 5)
    la t4, 2b
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    csrr a0, sie
    FAIL_IF_NE(a0, 0)               /* handler disabled STIE */
    csrr a0, sip
    andi a0, a0, MIP_STIP
    FAIL_IF_NE(a0, MIP_STIP)        /* still pending: only M can clear it */
    li TESTNUM, 68
    GOTO_M(m_7)
m_7:
    li t0, MIP_STIP
    csrc mip, t0
    csrr a0, mip
    andi a0, a0, MIP_STIP
    FAIL_IF_NE(a0, 0)

    /* ================= non-delegated interrupts taken in M from S/U ================= */
test_69:
    /* SSIP not delegated, mie.SSIE = 1, mstatus.MIE = 0: taken in M while in S */
    li TESTNUM, 69
    csrw mideleg, zero
    RESET_COUNT
    CLEAR_TI
    li t0, MIP_SSIP
    csrw mie, t0
    csrs mip, t0
    nop
    CHECK_TI(TI_COUNT, 0)           /* M with MIE = 0: not taken */
    MRET_TO(s_6, PRV_S)
s_6:
    nop
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_MODE, 3)
    CHECK_TI(TI_CAUSE, INT_BIT | 1)
    CHECK_MPP(PRV_S)
    la t4, s_6
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    li TESTNUM, 70
    GOTO_M(m_8)
m_8:
test_71:
    /* machine timer while in U with MIE = 0 */
    li TESTNUM, 71
    RESET_COUNT
    li t0, MIP_MTIP
    csrw mie, t0
    li t0, CLINT_MTIMECMP
    sd zero, 0(t0)
    MRET_TO(u_6, PRV_U)
u_6:
    nop
    CHECK_TI(TI_COUNT, 1)
    CHECK_TI(TI_MODE, 3)
    CHECK_TI(TI_CAUSE, INT_BIT | 7)
    CHECK_MPP(PRV_U)
    la t4, u_6
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    li TESTNUM, 72
    GOTO_M(m_9)
m_9:
    csrw mie, zero
    csrr a0, mip
    andi a0, a0, MIP_MTIP
    FAIL_IF_NE(a0, 0)

TEST_END
