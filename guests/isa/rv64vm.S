/*
 * rv64vm: Sv39 virtual memory.  Page tables built at run time: a 1 GiB
 * gigapage identity-maps MMIO (0-1 GiB) and another RAM (2-3 GiB), both
 * S-only; VA 0x40000000.. uses 4 KiB pages (via an L1 and an L0 table) and
 * a 2 MiB megapage.  Checks: translation to another physical page,
 * aliases, read-only page store fault (15), unmapped load/store/fetch
 * faults (13/15/12) with xtval = faulting VA and xepc, fetch from a non-X
 * page, execute-only page (executable; readable only with MXR), U-page
 * access from S (SUM), S fetch from a U page, U access to S pages, U
 * loads/stores to U pages, reserved W-only PTE, non-leaf PTE at level 0,
 * misaligned megapage, non-canonical VA, hardware A/D bit updates
 * (A set on fetch/load, A+D on store, untouched by a faulting access), PTE
 * change made visible by sfence.vma (global and by address), page faults
 * delegated to S (stvec, scause, stval, sepc), mstatus.MPRV with MPP=S/U,
 * satp write with a reserved MODE ignored.
 */
#define TEST_NAME "rv64vm"
#include "env.h"

#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_G 0x20
#define PTE_A 0x40
#define PTE_D 0x80
#define RWAD (PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)

#define VBASE   0x40000000
#define VA(i)   (VBASE + (i) * 0x1000)
#define MEGA_VA 0x40200000
#define MEGA_PA 0x80400000
#define BADMEGA_VA 0x40400000
#define SATP_MODE_SV39 (8 << 60)

#define U_LOAD  0
#define U_STORE 16

/* table[idx] = PTE(pa in register `pa`, flags); clobbers t0, t1 */
#define SET_PTE(table, idx, pa, flags) \
    srli t0, pa, 12; slli t0, t0, 10; ori t0, t0, flags; la t1, table; sd t0, (idx) * 8(t1)
/* read table[idx] into reg */
#define GET_PTE(reg, table, idx) la reg, table; ld reg, (idx) * 8(reg)

/* expected exception at label 2 in `code`; handled in `mode`; check cause, epc, tval */
#define TEST_PF(n, mode, cause, tval, code...) \
test_##n: li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(3f); code; j fail; 3: \
    CHECK_TI(TI_CAUSE, cause); CHECK_TI(TI_MODE, mode); CHECK_TI(TI_TVAL, tval); \
    la t4, 2b; LOAD_TI(t5, TI_EPC); FAIL_IF_NE2(t5, t4)
/* fetch fault: the jump at label 2 goes to `va`; epc = tval = va */
#define TEST_FETCH_PF(n, mode, va) \
test_##n: li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(3f); li a1, va; jalr ra, 0(a1); j fail; 3: \
    CHECK_TI(TI_CAUSE, CAUSE_FETCH_PAGE_FAULT); CHECK_TI(TI_MODE, mode); \
    CHECK_TI(TI_TVAL, va); CHECK_TI(TI_EPC, va)

/* run the U-mode snippet at offset `off` of the U code page (a1/a2 = args);
 * the snippet ends with ecall or faults; either way the M (or S) handler
 * resumes at label 3 in S-mode.  Clobbers t5, t6. */
#define RUN_U(off) \
    EXPECT_TRAP_PRIV(3f, PRV_S); li t5, MSTATUS_SPP | MSTATUS_SPIE; csrc sstatus, t5; \
    li t5, VA(6) + (off); csrw sepc, t5; sret; 3:

    /* ================= M-mode: build page tables ================= */
    PMP_OPEN_ALL
    csrw medeleg, zero
    csrw mideleg, zero
    la t0, s_trap_vector
    csrw stvec, t0
    la t0, s_trap_frame
    csrw sscratch, t0
    la t0, pt_root
    la t1, pt_end
1:  sd zero, 0(t0)
    addi t0, t0, 8
    bltu t0, t1, 1b

    li a0, 0
    SET_PTE(pt_root, 0, a0, RWAD | PTE_G)                   /* MMIO gigapage */
    la a0, pt_l1
    SET_PTE(pt_root, 1, a0, PTE_V)                          /* -> L1 */
    li a0, 0x80000000
    SET_PTE(pt_root, 2, a0, RWAD | PTE_X | PTE_G)           /* RAM gigapage */
    la a0, pt_l0
    SET_PTE(pt_l1, 0, a0, PTE_V)                            /* -> L0 */
    li a0, MEGA_PA
    SET_PTE(pt_l1, 1, a0, RWAD)                             /* megapage */
    li a0, MEGA_PA + 0x1000
    SET_PTE(pt_l1, 2, a0, RWAD)                             /* misaligned megapage */
    la a0, frame0
    SET_PTE(pt_l0, 0, a0, RWAD)
    la a0, frame1
    SET_PTE(pt_l0, 1, a0, PTE_V | PTE_R | PTE_A)            /* read-only */
    la a0, frame0
    SET_PTE(pt_l0, 2, a0, RWAD)                             /* alias of 0 */
    /* 3: invalid */
    la a0, frame2
    SET_PTE(pt_l0, 4, a0, PTE_V | PTE_X | PTE_A)            /* execute-only */
    la a0, frame3
    SET_PTE(pt_l0, 5, a0, RWAD | PTE_U)                     /* user data */
    la a0, u_code
    SET_PTE(pt_l0, 6, a0, PTE_V | PTE_R | PTE_X | PTE_U | PTE_A)   /* user code */
    la a0, frame4
    SET_PTE(pt_l0, 7, a0, PTE_V | PTE_R | PTE_W)            /* A = D = 0 */
    la a0, frame5
    SET_PTE(pt_l0, 8, a0, PTE_V | PTE_R | PTE_W | PTE_A)    /* D = 0 */
    la a0, frame6
    SET_PTE(pt_l0, 9, a0, PTE_V | PTE_W | PTE_A | PTE_D)    /* reserved: W without R */
    la a0, frame0
    SET_PTE(pt_l0, 10, a0, RWAD)                            /* remapped by sfence test */
    la a0, frame0
    SET_PTE(pt_l0, 11, a0, PTE_V)                           /* non-leaf at level 0 */
    la a0, frame2
    SET_PTE(pt_l0, 12, a0, PTE_V | PTE_X)                   /* execute-only, A = 0 */
    la a0, frame1
    SET_PTE(pt_l0, 13, a0, PTE_V | PTE_R)                   /* read-only, A = 0 */

    /* page contents (physical addresses) */
    la t0, frame0
    li t1, 0x1111111111111111
    sd t1, 0(t0)
    li t1, 0x2222222222222222
    sd t1, 8(t0)
    la t0, frame1
    li t1, 0x3333333333333333
    sd t1, 0(t0)
    la t0, frame3
    li t1, 0x5555555555555555
    sd t1, 0(t0)
    la t0, frame4
    li t1, 0x6666666666666666
    sd t1, 0(t0)
    la t0, frame5
    li t1, 0x7777777777777777
    sd t1, 0(t0)
    li t0, MEGA_PA
    li t1, 0x8888888888888888
    sd t1, 0(t0)
    li t1, 0x9999999999999999
    li t0, MEGA_PA + 0x1000
    sd t1, 8(t0)
    /* execute-only page: copy a tiny function */
    la t0, x_template
    la t1, frame2
    lw t2, 0(t0)
    sw t2, 0(t1)
    lw t2, 4(t0)
    sw t2, 4(t1)
    fence.i

    /* enable Sv39 */
    li t0, SATP_MODE_SV39
    la t1, pt_root
    srli t1, t1, 12
    or s2, t0, t1                   /* s2 = satp value */
    csrw satp, s2
    sfence.vma
    TEST_CASE(1, a0, 0, csrr a0, satp; sub a0, a0, s2)
    /* a reserved MODE makes the whole write have no effect */
    TEST_CASE(2, a0, 0, li a1, (5 << 60) | 0x1234; csrw satp, a1; csrr a0, satp; sub a0, a0, s2)
    li TESTNUM, 3
    MRET_TO(s_entry, PRV_S)

    /* ================= S-mode with translation ================= */
s_entry:
    TEST_CASE(4, a0, 0x1111111111111111, li a1, VA(0); ld a0, 0(a1))
    TEST_CASE(5, a0, 0x2222222222222222, li a1, VA(0); ld a0, 8(a1))
    TEST_CASE(6, a0, 0x1111111111111111, li a1, VA(2); ld a0, 0(a1))
    TEST_CASE(7, a0, 0xabcdef, li a1, VA(0); li a2, 0xabcdef; sd a2, 16(a1); li a1, VA(2); ld a0, 16(a1))
    TEST_CASE(8, a0, 0xabcdef, la a1, frame0; ld a0, 16(a1))          /* identity map sees it too */
    TEST_CASE(9, a0, 0x3333333333333333, li a1, VA(1); ld a0, 0(a1))
    TEST_PF(10, 3, CAUSE_STORE_PAGE_FAULT, VA(1) + 8, li a1, VA(1); li a2, 1; 2: sd a2, 8(a1))
    TEST_CASE(11, a0, 0, la a1, frame1; ld a0, 8(a1))                  /* not written */
    TEST_PF(12, 3, CAUSE_LOAD_PAGE_FAULT, VA(3) + 0x10, li a1, VA(3); 2: ld a0, 0x10(a1))
    TEST_PF(13, 3, CAUSE_STORE_PAGE_FAULT, VA(3) + 0x18, li a1, VA(3); 2: sw a0, 0x18(a1))
    TEST_FETCH_PF(14, 3, VA(3))
    TEST_FETCH_PF(15, 3, VA(0))                                         /* no X */
    /* execute-only page */
    TEST_CASE(16, a0, 0x77, li a0, 0; li a1, VA(4); jalr ra, 0(a1))
    TEST_PF(17, 3, CAUSE_LOAD_PAGE_FAULT, VA(4), li a1, VA(4); 2: lw a0, 0(a1))
    TEST_CASE(18, a0, 0, li t0, MSTATUS_MXR; csrs sstatus, t0; li a1, VA(4); lwu a0, 0(a1); \
                          csrc sstatus, t0; la a2, x_template; lwu a2, 0(a2); sub a0, a0, a2)
    TEST_PF(19, 3, CAUSE_STORE_PAGE_FAULT, VA(4), li t0, MSTATUS_MXR; csrs sstatus, t0; li a1, VA(4); \
                          2: sw a0, 0(a1))
    li t0, MSTATUS_MXR
    csrc sstatus, t0
    /* user page from S: needs SUM */
    TEST_PF(20, 3, CAUSE_LOAD_PAGE_FAULT, VA(5), li a1, VA(5); 2: ld a0, 0(a1))
    TEST_PF(21, 3, CAUSE_STORE_PAGE_FAULT, VA(5) + 8, li a1, VA(5); 2: sd a0, 8(a1))
    TEST_CASE(22, a0, 0x5555555555555555, li t0, MSTATUS_SUM; csrs sstatus, t0; li a1, VA(5); ld a0, 0(a1))
    TEST_CASE(23, a0, 0x42, li a2, 0x42; sd a2, 8(a1); la a3, frame3; ld a0, 8(a3))
    TEST_FETCH_PF(24, 3, VA(6))                                         /* S never executes U pages */
    li t0, MSTATUS_SUM
    csrc sstatus, t0
    /* megapage, misaligned megapage, non-canonical VA, bad PTEs */
    TEST_CASE(25, a0, 0x8888888888888888, li a1, MEGA_VA; ld a0, 0(a1))
    TEST_CASE(26, a0, 0x9999999999999999, li a1, MEGA_VA + 0x1000; ld a0, 8(a1))
    TEST_PF(27, 3, CAUSE_LOAD_PAGE_FAULT, BADMEGA_VA + 8, li a1, BADMEGA_VA; 2: ld a0, 8(a1))
    TEST_PF(28, 3, CAUSE_LOAD_PAGE_FAULT, 0x0000008000000000, li a1, 0x0000008000000000; 2: ld a0, 0(a1))
    TEST_PF(29, 3, CAUSE_STORE_PAGE_FAULT, 0xffffffc000000000 - 0x80000000 + 0x100, \
                          li a1, 0xffffffc000000000 - 0x80000000 + 0x100; 2: sd a0, 0(a1))
    TEST_PF(30, 3, CAUSE_LOAD_PAGE_FAULT, VA(9), li a1, VA(9); 2: ld a0, 0(a1))
    TEST_PF(31, 3, CAUSE_STORE_PAGE_FAULT, VA(9), li a1, VA(9); 2: sd a0, 0(a1))
    TEST_PF(32, 3, CAUSE_LOAD_PAGE_FAULT, VA(11), li a1, VA(11); 2: ld a0, 0(a1))
    /* hardware A/D updates */
    TEST_CASE(33, a0, PTE_V | PTE_R | PTE_W, GET_PTE(a0, pt_l0, 7); andi a0, a0, 0xff)
    TEST_CASE(34, a0, 0x6666666666666666, li a1, VA(7); ld a0, 0(a1))
    TEST_CASE(35, a0, PTE_V | PTE_R | PTE_W | PTE_A, GET_PTE(a0, pt_l0, 7); andi a0, a0, 0xff)
    TEST_CASE(36, a0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D, li a1, VA(7); sd zero, 8(a1); GET_PTE(a0, pt_l0, 7); andi a0, a0, 0xff)
    TEST_CASE(37, a0, PTE_V | PTE_R | PTE_W | PTE_A, li a1, VA(8); ld a0, 0(a1); GET_PTE(a0, pt_l0, 8); andi a0, a0, 0xff)
    TEST_CASE(38, a0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D, li a1, VA(8); sd zero, 8(a1); GET_PTE(a0, pt_l0, 8); andi a0, a0, 0xff)
    /* fetch sets A (not D); a faulting store does not touch A/D */
    TEST_CASE(59, a0, PTE_V | PTE_X | PTE_A, li a0, 0; li a1, VA(12); jalr ra, 0(a1); FAIL_IF_NE(a0, 0x77); \
                          GET_PTE(a0, pt_l0, 12); andi a0, a0, 0xff)
    TEST_PF(60, 3, CAUSE_STORE_PAGE_FAULT, VA(13), li a1, VA(13); 2: sd a0, 0(a1))
    TEST_CASE(61, a0, PTE_V | PTE_R, GET_PTE(a0, pt_l0, 13); andi a0, a0, 0xff)
    TEST_CASE(62, a0, 0x3333333333333333, li a1, VA(13); ld a0, 0(a1))
    TEST_CASE(63, a0, PTE_V | PTE_R | PTE_A, GET_PTE(a0, pt_l0, 13); andi a0, a0, 0xff)
    /* sfence.vma makes a changed PTE visible */
    TEST_CASE(39, a0, 0x1111111111111111, li a1, VA(10); ld a0, 0(a1))
    TEST_CASE(40, a0, 0x3333333333333333, la a0, frame1; SET_PTE(pt_l0, 10, a0, RWAD); sfence.vma; \
                          li a1, VA(10); ld a0, 0(a1))
    TEST_CASE(41, a0, 0x1111111111111111, la a0, frame0; SET_PTE(pt_l0, 10, a0, RWAD); li a1, VA(10); \
                          sfence.vma a1, zero; ld a0, 0(a1))
    TEST_CASE(42, a0, 0x3333333333333333, la a0, frame1; SET_PTE(pt_l0, 10, a0, RWAD); li a1, VA(10); \
                          sfence.vma a1; ld a0, 0(a1))
    li a0, 0
    SET_PTE(pt_l0, 10, a0, 0)                                           /* now invalid */
    sfence.vma
    TEST_PF(43, 3, CAUSE_LOAD_PAGE_FAULT, VA(10), li a1, VA(10); 2: ld a0, 0(a1))

    /* ================= U-mode ================= */
test_44:
    li TESTNUM, 44                  /* U load from a U page */
    CLEAR_TI
    li a0, 0
    li a1, VA(5)
    RUN_U(U_LOAD)
    CHECK_TI(TI_CAUSE, CAUSE_USER_ECALL)
    FAIL_IF_NE(a0, 0x5555555555555555)
test_45:
    li TESTNUM, 45                  /* U store to a U page */
    CLEAR_TI
    li a1, VA(5) + 16
    li a2, 0x1234
    RUN_U(U_STORE)
    CHECK_TI(TI_CAUSE, CAUSE_USER_ECALL)
    la a3, frame3
    ld a0, 16(a3)
    FAIL_IF_NE(a0, 0x1234)
test_46:
    li TESTNUM, 46                  /* U load from an S page */
    CLEAR_TI
    li a1, VA(0) + 8
    RUN_U(U_LOAD)
    CHECK_TI(TI_CAUSE, CAUSE_LOAD_PAGE_FAULT)
    CHECK_TI(TI_TVAL, VA(0) + 8)
    CHECK_TI(TI_EPC, VA(6) + U_LOAD)
    CHECK_TI(TI_MODE, 3)
test_47:
    li TESTNUM, 47                  /* U store to an S page, SUM = 1 does not matter */
    CLEAR_TI
    li t0, MSTATUS_SUM
    csrs sstatus, t0
    li a1, VA(0) + 8
    RUN_U(U_STORE)
    li t0, MSTATUS_SUM
    csrc sstatus, t0
    CHECK_TI(TI_CAUSE, CAUSE_STORE_PAGE_FAULT)
    CHECK_TI(TI_TVAL, VA(0) + 8)
    CHECK_TI(TI_EPC, VA(6) + U_STORE)
test_48:
    li TESTNUM, 48                  /* U fetch from an S page */
    CLEAR_TI
    EXPECT_TRAP_PRIV(3f, PRV_S)
    li t5, MSTATUS_SPP | MSTATUS_SPIE
    csrc sstatus, t5
    li t5, VA(4)
    csrw sepc, t5
    sret
3:  CHECK_TI(TI_CAUSE, CAUSE_FETCH_PAGE_FAULT)
    CHECK_TI(TI_TVAL, VA(4))
    CHECK_TI(TI_EPC, VA(4))
    LOAD_TI(t5, TI_STATUS)
    srli t5, t5, 11
    andi t5, t5, 3
    FAIL_IF_NE(t5, PRV_U)

    /* ================= page faults delegated to S ================= */
    li TESTNUM, 49
    GOTO_M(m_deleg)
m_deleg:
    li t0, (1 << CAUSE_FETCH_PAGE_FAULT) | (1 << CAUSE_LOAD_PAGE_FAULT) | (1 << CAUSE_STORE_PAGE_FAULT)
    csrw medeleg, t0
    MRET_TO(s_deleg, PRV_S)
s_deleg:
    TEST_PF(50, 1, CAUSE_LOAD_PAGE_FAULT, VA(3) + 0x20, li a1, VA(3); 2: ld a0, 0x20(a1))
    TEST_PF(51, 1, CAUSE_STORE_PAGE_FAULT, VA(1), li a1, VA(1); 2: sb a0, 0(a1))
    TEST_FETCH_PF(52, 1, VA(3) + 0x40)
test_53:
    li TESTNUM, 53                  /* from U, delegated: SPP = U */
    CLEAR_TI
    li a1, VA(0)
    RUN_U(U_LOAD)
    CHECK_TI(TI_CAUSE, CAUSE_LOAD_PAGE_FAULT)
    CHECK_TI(TI_MODE, 1)
    CHECK_TI(TI_TVAL, VA(0))
    CHECK_TI(TI_EPC, VA(6) + U_LOAD)
    LOAD_TI(t5, TI_STATUS)
    andi t5, t5, MSTATUS_SPP
    FAIL_IF_NE(t5, 0)
    li TESTNUM, 54
    GOTO_M(m_mprv)

    /* ================= M-mode with MPRV ================= */
m_mprv:
    csrw medeleg, zero
    TEST_CASE(55, a0, 0x1111111111111111, li t0, MSTATUS_MPP; csrc mstatus, t0; li t0, MSTATUS_MPP_S | MSTATUS_MPRV; \
                          csrs mstatus, t0; li a1, VA(0); ld a0, 0(a1); li t0, MSTATUS_MPRV; csrc mstatus, t0)
    TEST_CASE(56, a0, 0x5555555555555555, li t0, MSTATUS_MPP; csrc mstatus, t0; li t0, MSTATUS_MPRV; \
                          csrs mstatus, t0; li a1, VA(5); ld a0, 0(a1); li t0, MSTATUS_MPRV; csrc mstatus, t0)   /* MPP = U */
test_57:
    /* MPRV translation fault is taken in M (even if page faults were delegated) */
    li TESTNUM, 57
    li t0, (1 << CAUSE_LOAD_PAGE_FAULT)
    csrw medeleg, t0
    CLEAR_TI
    EXPECT_TRAP(3f)
    li t0, MSTATUS_MPP
    csrc mstatus, t0
    li t0, MSTATUS_MPP_S | MSTATUS_MPRV
    csrs mstatus, t0
    li a1, VA(3)
2:  ld a0, 0(a1)
    j fail
3:  li t0, MSTATUS_MPRV             /* MPRV may still be set: clear it before any load */
    csrc mstatus, t0
    csrw medeleg, zero
    CHECK_TI(TI_CAUSE, CAUSE_LOAD_PAGE_FAULT)
    CHECK_TI(TI_MODE, 3)
    CHECK_TI(TI_TVAL, VA(3))
    la t4, 2b
    LOAD_TI(t5, TI_EPC)
    FAIL_IF_NE2(t5, t4)
    /* instruction fetch in M is never translated, even with MPRV */
    TEST_CASE(58, a0, 7, li t0, MSTATUS_MPP; csrc mstatus, t0; li t0, MSTATUS_MPP_S | MSTATUS_MPRV; \
                          csrs mstatus, t0; li a0, 7; nop; li t0, MSTATUS_MPRV; csrc mstatus, t0)
    csrw satp, zero
    sfence.vma

TEST_END

/* U code page (mapped at VA(6) with U|R|X) */
    .section .text.upage, "ax"
    .balign 4096
u_code:
    ld a0, 0(a1)                    /* U_LOAD */
    ecall
    .balign 16
    sd a2, 0(a1)                    /* U_STORE */
    ecall
    .balign 4096

    .text
x_template:
    li a0, 0x77
    jalr zero, 0(ra)

    .section .bss.pages, "aw", @nobits
    .balign 4096
pt_root: .skip 4096
pt_l1:   .skip 4096
pt_l0:   .skip 4096
pt_end:
frame0:  .skip 4096
frame1:  .skip 4096
frame2:  .skip 4096
frame3:  .skip 4096
frame4:  .skip 4096
frame5:  .skip 4096
frame6:  .skip 4096
