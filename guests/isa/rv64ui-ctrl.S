/*
 * rv64ui-ctrl: RV64I lui, auipc, jal, jalr (link value, offset, bit 0
 * cleared, rd == rs1, x0 link), all six conditional branches taken and not
 * taken in both directions with signed/unsigned edge values, near-maximum
 * branch and jal offsets, a counted loop, fence variants.
 */
#define TEST_NAME "rv64ui-ctrl"
#include "env.h"

/* taken: forward branch, then backward branch with the same operands */
#define TEST_BR_TAKEN(n, inst, v1, v2) \
test_##n: li TESTNUM, n; li a1, v1; li a2, v2; \
    inst a1, a2, 2f; j fail; \
    2: j 4f; 3: j 5f; 4: inst a1, a2, 3b; j fail; 5:
/* not taken: forward and backward */
#define TEST_BR_NOTTAKEN(n, inst, v1, v2) \
test_##n: li TESTNUM, n; li a1, v1; li a2, v2; \
    inst a1, a2, 2f; j 3f; 2: j fail; \
    3: inst a1, a2, 2b

    /* ---- lui ---- */
    TEST_CASE(1, a0, 0, lui a0, 0)
    TEST_CASE(2, a0, 0x12345000, lui a0, 0x12345)
    TEST_CASE(3, a0, 0x7ffff000, lui a0, 0x7ffff)
    TEST_CASE(4, a0, 0xffffffff80000000, lui a0, 0x80000)       /* sign-extended */
    TEST_CASE(5, a0, 0xfffffffffffff000, lui a0, 0xfffff)
    TEST_CASE(6, a0, 0xfffffffffffff800, lui a0, 0xfffff; srai a0, a0, 1)
    TEST_CASE(7, a0, 0x12345678, lui a0, 0x12345; addi a0, a0, 0x678)
    TEST_CASE(8, zero, 0, lui zero, 0x80000)

    /* ---- auipc ---- */
    TEST_CASE(9, a0, 0, 1: auipc a0, 0; la a1, 1b; sub a0, a0, a1)
    TEST_CASE(10, a0, 0x1000, 1: auipc a0, 1; la a1, 1b; sub a0, a0, a1)
    TEST_CASE(11, a0, 0x7ffff000, 1: auipc a0, 0x7ffff; la a1, 1b; sub a0, a0, a1)
    TEST_CASE(12, a0, 0xffffffff80000000, 1: auipc a0, 0x80000; la a1, 1b; sub a0, a0, a1)
    TEST_CASE(13, a0, 0xfffffffffffff000, 1: auipc a0, 0xfffff; la a1, 1b; sub a0, a0, a1)
    /* pc is 0x8000xxxx: auipc 0x80000 yields pc - 2^31, a small positive number */
    TEST_CASE(14, a0, 0, 1: auipc a0, 0x80000; srli a0, a0, 31)

    /* ---- jal ---- */
    TEST_CASE(15, a0, 0, la a2, 2f; jal a1, 3f; 2: j fail; 3: sub a0, a1, a2)
    TEST_CASE(16, a0, 0, la a2, 2f; j 3f; 4: j 5f; 3: jal a1, 4b; 2: j fail; 5: sub a0, a1, a2)  /* backward */
    TEST_CASE(17, a0, 7, li a0, 7; jal zero, 2f; li a0, 1; 2: nop)
    TEST_CASE(18, zero, 0, jal zero, 2f; 2: nop)
    /* jal into a following instruction sequence: check instructions after jal did not run */
    TEST_CASE(19, a0, 3, li a0, 3; jal ra, 2f; addi a0, a0, 1; addi a0, a0, 1; 2: nop)

    /* ---- jalr ---- */
    TEST_CASE(20, a0, 0, la a2, 3f; la a3, 2f; jalr a1, 0(a2); 2: j fail; 3: sub a0, a1, a3)
    TEST_CASE(21, a0, 0, la a2, 3f - 4; la a3, 2f; jalr a1, 4(a2); 2: j fail; 3: sub a0, a1, a3)
    TEST_CASE(22, a0, 0, la a2, 3f + 8; la a3, 2f; jalr a1, -8(a2); 2: j fail; 3: sub a0, a1, a3)
    /* target bit 0 is cleared */
    TEST_CASE(23, a0, 0, la a2, 3f + 1; la a3, 2f; jalr a1, 0(a2); 2: j fail; 3: sub a0, a1, a3)
    TEST_CASE(24, a0, 0, la a2, 3f; la a3, 2f; jalr a1, 1(a2); 2: j fail; 3: sub a0, a1, a3)
    /* rd == rs1: target computed from the old value */
    TEST_CASE(25, a0, 0, la a1, 3f; la a3, 2f; jalr a1, 0(a1); 2: j fail; 3: sub a0, a1, a3)
    /* rd = x0 */
    TEST_CASE(26, a0, 5, li a0, 5; la a2, 3f; jalr zero, 0(a2); li a0, 1; 3: nop)
    TEST_CASE(27, zero, 0, la a2, 3f; jalr zero, 0(a2); 3: nop)
    /* call/ret through ra */
    TEST_CASE(28, a0, 42, li a0, 40; jal ra, 2f; j 3f; 2: addi a0, a0, 2; jalr zero, 0(ra); j fail; 3: nop)
    /* negative immediate, large */
    TEST_CASE(29, a0, 0, la a2, 3f + 2047; la a3, 2f; jalr a1, -2047(a2); 2: j fail; 3: sub a0, a1, a3)
    TEST_CASE(30, a0, 0, la a2, 3f - 2047; la a3, 2f; jalr a1, 2047(a2); 2: j fail; 3: sub a0, a1, a3)

    /* ---- counted loops ---- */
    TEST_CASE(31, a0, 55, li a0, 0; li a1, 10; 2: add a0, a0, a1; addi a1, a1, -1; bnez a1, 2b)
    TEST_CASE(32, a0, 4950, li a0, 0; li a1, 0; li a2, 100; 2: add a0, a0, a1; addi a1, a1, 1; bltu a1, a2, 2b)

    /* ---- beq ---- */
    TEST_BR_TAKEN(40, beq, 0x0, 0x0)
    TEST_BR_TAKEN(41, beq, 0x1, 0x1)
    TEST_BR_TAKEN(42, beq, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_BR_NOTTAKEN(43, beq, 0x0, 0x1)
    TEST_BR_NOTTAKEN(44, beq, 0x1, 0x0)
    TEST_BR_NOTTAKEN(45, beq, 0xffffffffffffffff, 0x1)
    TEST_BR_NOTTAKEN(46, beq, 0x1, 0xffffffffffffffff)
    TEST_BR_NOTTAKEN(47, beq, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_BR_NOTTAKEN(48, beq, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_BR_NOTTAKEN(49, beq, 0xffffffff, 0x1ffffffff)
    TEST_BR_NOTTAKEN(50, beq, 0x100000000, 0x0)

    /* ---- bne ---- */
    TEST_BR_NOTTAKEN(51, bne, 0x0, 0x0)
    TEST_BR_NOTTAKEN(52, bne, 0x1, 0x1)
    TEST_BR_NOTTAKEN(53, bne, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_BR_TAKEN(54, bne, 0x0, 0x1)
    TEST_BR_TAKEN(55, bne, 0x1, 0x0)
    TEST_BR_TAKEN(56, bne, 0xffffffffffffffff, 0x1)
    TEST_BR_TAKEN(57, bne, 0x1, 0xffffffffffffffff)
    TEST_BR_TAKEN(58, bne, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_BR_TAKEN(59, bne, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_BR_TAKEN(60, bne, 0xffffffff, 0x1ffffffff)
    TEST_BR_TAKEN(61, bne, 0x100000000, 0x0)

    /* ---- blt ---- */
    TEST_BR_NOTTAKEN(62, blt, 0x0, 0x0)
    TEST_BR_NOTTAKEN(63, blt, 0x1, 0x1)
    TEST_BR_NOTTAKEN(64, blt, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_BR_TAKEN(65, blt, 0x0, 0x1)
    TEST_BR_NOTTAKEN(66, blt, 0x1, 0x0)
    TEST_BR_TAKEN(67, blt, 0xffffffffffffffff, 0x1)
    TEST_BR_NOTTAKEN(68, blt, 0x1, 0xffffffffffffffff)
    TEST_BR_TAKEN(69, blt, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_BR_NOTTAKEN(70, blt, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_BR_TAKEN(71, blt, 0xffffffff, 0x1ffffffff)
    TEST_BR_NOTTAKEN(72, blt, 0x100000000, 0x0)

    /* ---- bge ---- */
    TEST_BR_TAKEN(73, bge, 0x0, 0x0)
    TEST_BR_TAKEN(74, bge, 0x1, 0x1)
    TEST_BR_TAKEN(75, bge, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_BR_NOTTAKEN(76, bge, 0x0, 0x1)
    TEST_BR_TAKEN(77, bge, 0x1, 0x0)
    TEST_BR_NOTTAKEN(78, bge, 0xffffffffffffffff, 0x1)
    TEST_BR_TAKEN(79, bge, 0x1, 0xffffffffffffffff)
    TEST_BR_NOTTAKEN(80, bge, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_BR_TAKEN(81, bge, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_BR_NOTTAKEN(82, bge, 0xffffffff, 0x1ffffffff)
    TEST_BR_TAKEN(83, bge, 0x100000000, 0x0)

    /* ---- bltu ---- */
    TEST_BR_NOTTAKEN(84, bltu, 0x0, 0x0)
    TEST_BR_NOTTAKEN(85, bltu, 0x1, 0x1)
    TEST_BR_NOTTAKEN(86, bltu, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_BR_TAKEN(87, bltu, 0x0, 0x1)
    TEST_BR_NOTTAKEN(88, bltu, 0x1, 0x0)
    TEST_BR_NOTTAKEN(89, bltu, 0xffffffffffffffff, 0x1)
    TEST_BR_TAKEN(90, bltu, 0x1, 0xffffffffffffffff)
    TEST_BR_NOTTAKEN(91, bltu, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_BR_TAKEN(92, bltu, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_BR_TAKEN(93, bltu, 0xffffffff, 0x1ffffffff)
    TEST_BR_NOTTAKEN(94, bltu, 0x100000000, 0x0)

    /* ---- bgeu ---- */
    TEST_BR_TAKEN(95, bgeu, 0x0, 0x0)
    TEST_BR_TAKEN(96, bgeu, 0x1, 0x1)
    TEST_BR_TAKEN(97, bgeu, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_BR_NOTTAKEN(98, bgeu, 0x0, 0x1)
    TEST_BR_TAKEN(99, bgeu, 0x1, 0x0)
    TEST_BR_TAKEN(100, bgeu, 0xffffffffffffffff, 0x1)
    TEST_BR_NOTTAKEN(101, bgeu, 0x1, 0xffffffffffffffff)
    TEST_BR_TAKEN(102, bgeu, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_BR_NOTTAKEN(103, bgeu, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_BR_NOTTAKEN(104, bgeu, 0xffffffff, 0x1ffffffff)
    TEST_BR_TAKEN(105, bgeu, 0x100000000, 0x0)

    /* ---- near-maximum branch / jal offsets ---- */
test_106:
    li TESTNUM, 106
    li a1, 1
    beq a1, a1, 2f              /* +4092 */
    .skip 4084
    j fail
2:  nop
test_107:
    li TESTNUM, 107
    j 3f
2:  j 4f
    .skip 4084
3:  bne a1, zero, 2b            /* -4092 */
    j fail
4:  nop
test_108:
    li TESTNUM, 108
    la a3, 2f
    jal a2, 3f                  /* +0x10000 */
2:  .skip 0x10000 - 4
    j fail
3:  bne a2, a3, fail_far

    /* ---- fences are no-ops for a single hart ---- */
    TEST_CASE(109, a0, 0x5a, la a1, fdat; li a2, 0x5a; sd a2, 0(a1); fence; ld a0, 0(a1))
    TEST_CASE(110, a0, 0x5b, la a1, fdat; li a2, 0x5b; sd a2, 0(a1); fence rw, rw; ld a0, 0(a1))
    TEST_CASE(111, a0, 0x5c, la a1, fdat; li a2, 0x5c; sd a2, 0(a1); fence w, r; ld a0, 0(a1))
    TEST_CASE(112, a0, 0x5d, la a1, fdat; li a2, 0x5d; sd a2, 0(a1); fence iorw, iorw; fence.tso; ld a0, 0(a1))
    TEST_CASE(113, a0, 1, li a0, 1; .word 0x0100000f)       /* pause (fence w,0) */

TEST_END

fail_far:
    j fail

    .data
    .align 3
fdat:
    .dword 0
