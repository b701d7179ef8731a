/*
 * rv64zifencei: self-modifying code made visible with fence.i: patching a
 * called function, patching the very next instruction in straight-line
 * code, repeated patching in a loop, generating code into a data buffer
 * (32-bit and compressed instructions, whole-word and half-word stores).
 */
#define TEST_NAME "rv64zifencei"
#include "env.h"

/* copy the 32-bit instruction at template `tmpl` to address in `dst` */
#define PATCH32(dst, tmpl) la t0, tmpl; lwu t1, 0(t0); sw t1, 0(dst)

    /* ---- patch a function and call it again ---- */
    TEST_CASE(1, a0, 1, li a0, 0; jal ra, func)
    TEST_CASE(2, a0, 2, la a1, func; PATCH32(a1, t_li2); fence.i; li a0, 0; jal ra, func)
    TEST_CASE(3, a0, 3, la a1, func; PATCH32(a1, t_li3); fence.i; li a0, 0; jal ra, func)

    /* ---- patch the instruction right after the fence.i ---- */
    TEST_CASE(4, a0, 4, li a0, 0; la a1, 2f; PATCH32(a1, t_li4); fence.i; 2: addi a0, zero, 0x7ff)

    /* ---- patch in a loop: each iteration rewrites the immediate of the same addi ---- */
test_5:
    li TESTNUM, 5
    li a0, 0                        /* sum */
    li a2, 1                        /* iteration 1..10 */
    la a3, 3f
    la t0, t_addi_a4                /* addi a4, zero, 0 */
    lwu a5, 0(t0)
2:  slli t1, a2, 20                 /* imm field */
    or t1, t1, a5
    sw t1, 0(a3)
    fence.i
3:  addi a4, zero, 0                /* patched: a4 = a2 */
    add a0, a0, a4
    addi a2, a2, 1
    li t1, 11
    bne a2, t1, 2b
    FAIL_IF_NE(a0, 55)

    /* ---- code generated into a data buffer ---- */
    TEST_CASE(6, a0, 15, la a1, codebuf; PATCH32(a1, t_addi5); addi a1, a1, 4; PATCH32(a1, t_ret); \
                  fence.i; li a0, 10; la a1, codebuf; jalr ra, 0(a1))
    TEST_CASE(7, a0, 17, la a1, codebuf; PATCH32(a1, t_addi7); fence.i; li a0, 10; la a1, codebuf; jalr ra, 0(a1))
    /* half-word stores: replace the upper half (immediate) of the addi with -1 */
    TEST_CASE(8, a0, 9, la a1, codebuf; li t1, 0xfff5; sh t1, 2(a1); fence.i; li a0, 10; jalr ra, 0(a1))
    /* compressed instructions: c.li a0, 9 ; c.jr ra */
    TEST_CASE(9, a0, 9, la a1, codebuf; li t1, 0x80824525; sw t1, 0(a1); fence.i; li a0, 0; jalr ra, 0(a1))
    /* byte stores: c.li a0, 12 (0x4531) */
    TEST_CASE(10, a0, 12, la a1, codebuf; li t1, 0x31; sb t1, 0(a1); fence.i; li a0, 0; jalr ra, 0(a1))

TEST_END

    .balign 4
func:
    addi a0, zero, 1
    jalr zero, 0(ra)

/* templates (never executed in place) */
t_li2:      addi a0, zero, 2
t_li3:      addi a0, zero, 3
t_li4:      addi a0, zero, 4
t_addi_a4:  addi a4, zero, 0
t_addi5:    addi a0, a0, 5
t_addi7:    addi a0, a0, 7
t_ret:      jalr zero, 0(ra)

    .data
    .balign 8
codebuf:
    .skip 64
