/*
 * misaligned: misaligned loads and stores of every width succeed with the
 * correct little-endian value (as QEMU 7.2 does: no trap), including
 * accesses crossing an 8-byte boundary, a 4 KiB page boundary (bare M-mode)
 * and, under Sv39 in S-mode, a page boundary between two virtually
 * contiguous but physically swapped pages.  A misaligned store/load crossing
 * into a page that faults raises a page fault with xtval = the first byte of
 * the faulting page and writes nothing.  Misaligned LR and AMOs raise
 * load-address-misaligned (cause 4, mtval = address; QEMU 7.2 behaviour for
 * AMOs) without touching memory; a misaligned SC without a matching
 * reservation simply fails (rd = 1) without trapping (QEMU 7.2).
 */
#define TEST_NAME "misaligned"
#include "env.h"

#define TEST_MST(n, inst, off, exp_lo, exp_hi) \
    TEST_CASE(n, a0, exp_lo, la a1, sbuf; li a2, 0xaaaaaaaaaaaaaaaa; sd a2, 0(a1); sd a2, 8(a1); \
              li a2, 0x0102030405060708; inst a2, off(a1); ld a0, 0(a1)); \
    ld a0, 8(a1); FAIL_IF_NE(a0, exp_hi)
/* expected exception at label 2 with cause/tval */
#define TEST_EXC(n, cause, tval, code...) \
test_##n: li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(3f); code; j fail; 3: \
    CHECK_TI(TI_CAUSE, cause); CHECK_TI(TI_TVAL, tval); \
    la t4, 2b; LOAD_TI(t5, TI_EPC); FAIL_IF_NE2(t5, t4)
/* same, tval given as register */
#define TEST_EXC_R(n, cause, tvalreg, code...) \
test_##n: li TESTNUM, n; CLEAR_TI; EXPECT_TRAP(3f); code; j fail; 3: \
    CHECK_TI(TI_CAUSE, cause); LOAD_TI(t5, TI_TVAL); FAIL_IF_NE2(t5, tvalreg); \
    la t4, 2b; LOAD_TI(t5, TI_EPC); FAIL_IF_NE2(t5, t4)

#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_A 0x40
#define PTE_D 0x80
#define RWAD (PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)
#define VA(i) (0x40000000 + (i) * 0x1000)
#define SET_PTE(table, idx, pa, flags) \
    srli t0, pa, 12; slli t0, t0, 10; ori t0, t0, flags; la t1, table; sd t0, (idx) * 8(t1)

    /* ---- misaligned loads (buffer bytes: 0x81 + 0x37*i), incl. crossing an 8-byte boundary ---- */
    TEST_CASE(1, a0, 0xffffffffffffefb8, la a1, mdat; lh a0, 1(a1))
    TEST_CASE(2, a0, 0x5d26, la a1, mdat; lh a0, 3(a1))
    TEST_CASE(3, a0, 0xffffffffffffcb94, la a1, mdat; lh a0, 5(a1))
    TEST_CASE(4, a0, 0x3902, la a1, mdat; lh a0, 7(a1))
    TEST_CASE(5, a0, 0xefb8, la a1, mdat; lhu a0, 1(a1))
    TEST_CASE(6, a0, 0x3902, la a1, mdat; lhu a0, 7(a1))
    TEST_CASE(7, a0, 0x5d26efb8, la a1, mdat; lw a0, 1(a1))
    TEST_CASE(8, a0, 0xffffffff945d26ef, la a1, mdat; lw a0, 2(a1))
    TEST_CASE(9, a0, 0xffffffffcb945d26, la a1, mdat; lw a0, 3(a1))
    TEST_CASE(10, a0, 0x3902cb94, la a1, mdat; lw a0, 5(a1))
    TEST_CASE(11, a0, 0x703902cb, la a1, mdat; lw a0, 6(a1))
    TEST_CASE(12, a0, 0xffffffffa7703902, la a1, mdat; lw a0, 7(a1))
    TEST_CASE(13, a0, 0x5d26efb8, la a1, mdat; lwu a0, 1(a1))
    TEST_CASE(14, a0, 0xcb945d26, la a1, mdat; lwu a0, 3(a1))
    TEST_CASE(15, a0, 0x703902cb, la a1, mdat; lwu a0, 6(a1))
    TEST_CASE(16, a0, 0xa7703902, la a1, mdat; lwu a0, 7(a1))
    TEST_CASE(17, a0, 0x3902cb945d26efb8, la a1, mdat; ld a0, 1(a1))
    TEST_CASE(18, a0, 0x703902cb945d26ef, la a1, mdat; ld a0, 2(a1))
    TEST_CASE(19, a0, 0xa7703902cb945d26, la a1, mdat; ld a0, 3(a1))
    TEST_CASE(20, a0, 0xdea7703902cb945d, la a1, mdat; ld a0, 4(a1))
    TEST_CASE(21, a0, 0x15dea7703902cb94, la a1, mdat; ld a0, 5(a1))
    TEST_CASE(22, a0, 0x4c15dea7703902cb, la a1, mdat; ld a0, 6(a1))
    TEST_CASE(23, a0, 0x834c15dea7703902, la a1, mdat; ld a0, 7(a1))

    /* ---- misaligned stores (buffer prefilled with 0xaa), checked with aligned loads ---- */
    TEST_MST(24, sh, 1, 0xaaaaaaaaaa0708aa, 0xaaaaaaaaaaaaaaaa)
    TEST_MST(25, sh, 3, 0xaaaaaa0708aaaaaa, 0xaaaaaaaaaaaaaaaa)
    TEST_MST(26, sh, 7, 0x8aaaaaaaaaaaaaa, 0xaaaaaaaaaaaaaa07)
    TEST_MST(27, sw, 1, 0xaaaaaa05060708aa, 0xaaaaaaaaaaaaaaaa)
    TEST_MST(28, sw, 2, 0xaaaa05060708aaaa, 0xaaaaaaaaaaaaaaaa)
    TEST_MST(29, sw, 3, 0xaa05060708aaaaaa, 0xaaaaaaaaaaaaaaaa)
    TEST_MST(30, sw, 5, 0x60708aaaaaaaaaa, 0xaaaaaaaaaaaaaa05)
    TEST_MST(31, sw, 6, 0x708aaaaaaaaaaaa, 0xaaaaaaaaaaaa0506)
    TEST_MST(32, sw, 7, 0x8aaaaaaaaaaaaaa, 0xaaaaaaaaaa050607)
    TEST_MST(33, sd, 1, 0x2030405060708aa, 0xaaaaaaaaaaaaaa01)
    TEST_MST(34, sd, 2, 0x30405060708aaaa, 0xaaaaaaaaaaaa0102)
    TEST_MST(35, sd, 3, 0x405060708aaaaaa, 0xaaaaaaaaaa010203)
    TEST_MST(36, sd, 4, 0x5060708aaaaaaaa, 0xaaaaaaaa01020304)
    TEST_MST(37, sd, 5, 0x60708aaaaaaaaaa, 0xaaaaaa0102030405)
    TEST_MST(38, sd, 6, 0x708aaaaaaaaaaaa, 0xaaaa010203040506)
    TEST_MST(39, sd, 7, 0x8aaaaaaaaaaaaaa, 0xaa01020304050607)

    /* ---- crossing a 4 KiB page boundary (bare M-mode) ---- */
    /* copy the first 16 pattern bytes to pgbuf + 4088 .. 4103 */
    la a0, mdat
    la a1, pgbuf
    li t0, 4088
    add a1, a1, t0
    ld t0, 0(a0)
    sd t0, 0(a1)
    ld t0, 8(a0)
    sd t0, 8(a1)
    TEST_CASE(40, a0, 0x15dea7703902cb94, la a1, pgbuf; li t0, 4093; add a1, a1, t0; ld a0, 0(a1))
    TEST_CASE(41, a0, 0x3902cb945d26efb8, la a1, pgbuf; li t0, 4089; add a1, a1, t0; ld a0, 0(a1))
    TEST_CASE(42, a0, 0x834c15dea7703902, la a1, pgbuf; li t0, 4095; add a1, a1, t0; ld a0, 0(a1))
    TEST_CASE(43, a0, 0x703902cb, la a1, pgbuf; li t0, 4094; add a1, a1, t0; lw a0, 0(a1))
    TEST_CASE(44, a0, 0x3902cb94, la a1, pgbuf; li t0, 4093; add a1, a1, t0; lwu a0, 0(a1))
    TEST_CASE(45, a0, 0xffffffffa7703902, la a1, pgbuf; li t0, 4095; add a1, a1, t0; lw a0, 0(a1))
    TEST_CASE(46, a0, 0x3902, la a1, pgbuf; li t0, 4095; add a1, a1, t0; lh a0, 0(a1))
    TEST_CASE(47, a0, 0x3902, la a1, pgbuf; li t0, 4095; add a1, a1, t0; lhu a0, 0(a1))
    TEST_CASE(48, a0, 0x607085d26efb881, la a1, pgbuf; li t0, 4093; add a1, a1, t0; li a2, 0x102030405060708; sd a2, 0(a1); \
              la a1, pgbuf; li t0, 4088; add a1, a1, t0; ld a0, 0(a1)); ld a0, 8(a1); FAIL_IF_NE(a0, 0xba834c0102030405)
    TEST_CASE(49, a0, 0xbeef085d26efb881, la a1, pgbuf; li t0, 4094; add a1, a1, t0; li a2, 0xdeadbeef; sw a2, 0(a1); \
              la a1, pgbuf; li t0, 4088; add a1, a1, t0; ld a0, 0(a1)); ld a0, 8(a1); FAIL_IF_NE(a0, 0xba834c010203dead)
    TEST_CASE(50, a0, 0xfeef085d26efb881, la a1, pgbuf; li t0, 4095; add a1, a1, t0; li a2, 0xcafe; sh a2, 0(a1); \
              la a1, pgbuf; li t0, 4088; add a1, a1, t0; ld a0, 0(a1)); ld a0, 8(a1); FAIL_IF_NE(a0, 0xba834c010203deca)
    TEST_CASE(51, a0, 0x2233445566778881, la a1, pgbuf; li t0, 4089; add a1, a1, t0; li a2, 0x1122334455667788; sd a2, 0(a1); \
              la a1, pgbuf; li t0, 4088; add a1, a1, t0; ld a0, 0(a1)); ld a0, 8(a1); FAIL_IF_NE(a0, 0xba834c010203de11)

    /* ---- Sv39, S-mode: VA(0) -> frameB, VA(1) -> frameA (physically before frameB),
     *      VA(2) -> frameA read-only, VA(3) invalid ---- */
    PMP_OPEN_ALL
    la t0, pt_root
    la t1, pt_end
1:  sd zero, 0(t0)
    addi t0, t0, 8
    bltu t0, t1, 1b
    li a0, 0
    SET_PTE(pt_root, 0, a0, RWAD)
    la a0, pt_l1
    SET_PTE(pt_root, 1, a0, PTE_V)
    li a0, 0x80000000
    SET_PTE(pt_root, 2, a0, RWAD | PTE_X)
    la a0, pt_l0
    SET_PTE(pt_l1, 0, a0, PTE_V)
    la a0, frameB
    SET_PTE(pt_l0, 0, a0, RWAD)
    la a0, frameA
    SET_PTE(pt_l0, 1, a0, RWAD)
    la a0, frameA
    SET_PTE(pt_l0, 2, a0, PTE_V | PTE_R | PTE_A)
    /* pattern bytes 0..7 at the end of frameB, 8..15 at the start of frameA */
    la a0, mdat
    la a1, frameB
    li t0, 4088
    add a1, a1, t0
    ld t0, 0(a0)
    sd t0, 0(a1)
    la a1, frameA
    ld t0, 8(a0)
    sd t0, 0(a1)
    li t0, 4088
    add a1, a1, t0
    li t0, 0xaaaaaaaaaaaaaaaa
    sd t0, 0(a1)                /* end of frameA (VA(1)/VA(2) page end) */
    li t0, 8 << 60
    la t1, pt_root
    srli t1, t1, 12
    or t0, t0, t1
    csrw satp, t0
    sfence.vma
    li TESTNUM, 59
    MRET_TO(s_mode, PRV_S)
s_mode:
    TEST_CASE(60, a0, 0x15dea7703902cb94, li a1, VA(1) - 3; ld a0, 0(a1))
    TEST_CASE(61, a0, 0x703902cb, li a1, VA(1) - 2; lw a0, 0(a1))
    TEST_CASE(62, a0, 0x3902, li a1, VA(1) - 1; lhu a0, 0(a1))
    TEST_CASE(63, a0, 0x3902cb945d26efb8, li a1, VA(1) - 7; ld a0, 0(a1))
    /* store across the boundary lands in both physical frames */
    TEST_CASE(64, a0, 0x0607085d26efb881, li a1, VA(1) - 3; li a2, 0x0102030405060708; sd a2, 0(a1); \
              la a1, frameB; li t0, 4088; add a1, a1, t0; ld a0, 0(a1))
    TEST_CASE(65, a0, 0xba834c0102030405, la a1, frameA; ld a0, 0(a1))
    /* store crossing from a writable page into a read-only page: page fault on the
     * second page (xtval = its first byte), nothing written to the first page */
    TEST_EXC(66, CAUSE_STORE_PAGE_FAULT, VA(2), li a1, VA(2) - 4; li a2, 0x0102030405060708; 2: sd a2, 0(a1))
    TEST_CASE(67, a0, 0xaaaaaaaaaaaaaaaa, la a1, frameA; li t0, 4088; add a1, a1, t0; ld a0, 0(a1))
    /* load crossing into an invalid page */
    TEST_EXC(68, CAUSE_LOAD_PAGE_FAULT, VA(3), li a1, VA(3) - 2; 2: lw a0, 0(a1))
    /* load crossing from an invalid page into a valid one */
    TEST_EXC(69, CAUSE_LOAD_PAGE_FAULT, VA(4) - 4, li a1, VA(4) - 4; 2: ld a0, 0(a1))
    li TESTNUM, 70
    GOTO_M(m_mode)
m_mode:
    csrw satp, zero
    sfence.vma

    /* ---- misaligned LR / SC / AMO ---- */
    la s0, abuf
    li t0, 0x1122334455667788
    sd t0, 0(s0)
    sd t0, 8(s0)
    addi a1, s0, 2
    TEST_EXC_R(71, CAUSE_MISALIGNED_LOAD, a1, 2: lr.w a0, (a1))
    addi a1, s0, 4
    TEST_EXC_R(72, CAUSE_MISALIGNED_LOAD, a1, 2: lr.d a0, (a1))
    addi a1, s0, 1
    TEST_EXC_R(73, CAUSE_MISALIGNED_LOAD, a1, 2: lr.d a0, (a1))
    addi a1, s0, 2
    TEST_EXC_R(74, CAUSE_MISALIGNED_LOAD, a1, li a2, 5; 2: amoswap.w a0, a2, (a1))
    addi a1, s0, 1
    TEST_EXC_R(75, CAUSE_MISALIGNED_LOAD, a1, li a2, 5; 2: amoadd.w a0, a2, (a1))
    addi a1, s0, 4
    TEST_EXC_R(76, CAUSE_MISALIGNED_LOAD, a1, li a2, 5; 2: amoadd.d a0, a2, (a1))
    addi a1, s0, 6
    TEST_EXC_R(77, CAUSE_MISALIGNED_LOAD, a1, li a2, 5; 2: amoor.d a0, a2, (a1))
    addi a1, s0, 7
    TEST_EXC_R(78, CAUSE_MISALIGNED_LOAD, a1, li a2, 5; 2: amomaxu.d a0, a2, (a1))
    addi a1, s0, 3
    TEST_EXC_R(79, CAUSE_MISALIGNED_LOAD, a1, li a2, 5; 2: amominu.w a0, a2, (a1))
    /* memory untouched by the faulting AMOs */
    TEST_CASE(80, a0, 0x1122334455667788, ld a0, 0(s0))
    TEST_CASE(81, a0, 0x1122334455667788, ld a0, 8(s0))
    /* a .w AMO at a 4-byte aligned (but not 8-byte aligned) address is fine */
    TEST_CASE(82, a0, 0x11223344, addi a1, s0, 4; li a2, 1; amoadd.w a0, a2, (a1))
    TEST_CASE(83, a0, 0x1122334555667788, ld a0, 0(s0))
    /* misaligned SC without a matching reservation: fails with 1, no trap, no write */
    TEST_CASE(84, a0, 1, RESET_COUNT; addi a1, s0, 2; li a2, -1; sc.w a0, a2, (a1))
    TEST_CASE(85, a0, 1, lr.d a3, (s0); addi a1, s0, 4; li a2, -1; sc.d a0, a2, (a1))
    TEST_CASE(86, a0, 1, lr.w a3, (s0); addi a1, s0, 1; li a2, -1; sc.w a0, a2, (a1))
    CHECK_TI(TI_COUNT, 0)
    TEST_CASE(87, a0, 0x1122334555667788, ld a0, 0(s0))
    TEST_CASE(88, a0, 0x1122334455667788, ld a0, 8(s0))

TEST_END

    .data
    .balign 8
mdat:
    .byte 0x81, 0xb8, 0xef, 0x26, 0x5d, 0x94, 0xcb, 0x02
    .byte 0x39, 0x70, 0xa7, 0xde, 0x15, 0x4c, 0x83, 0xba
    .byte 0xf1, 0x28, 0x5f, 0x96, 0xcd, 0x04, 0x3b, 0x72
sbuf:
    .dword 0, 0, 0
abuf:
    .dword 0, 0

    .section .bss.pages, "aw", @nobits
    .balign 4096
pgbuf:  .skip 8192
pt_root: .skip 4096
pt_l1:   .skip 4096
pt_l0:   .skip 4096
pt_end:
frameA: .skip 4096
frameB: .skip 4096
