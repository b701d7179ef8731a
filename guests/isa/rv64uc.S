/*
 * rv64uc: C extension (RV64C integer subset), written with explicit c.*
 * mnemonics: c.li c.lui c.addi c.addiw c.addi16sp c.addi4spn c.slli c.srli
 * c.srai c.andi c.mv c.add c.sub c.xor c.or c.and c.subw c.addw c.lw c.ld
 * c.sw c.sd c.lwsp c.ldsp c.swsp c.sdsp c.j c.jr c.jalr (link = pc+2)
 * c.beqz c.bnez c.nop, plus 32-bit instructions at 2-mod-4 addresses and
 * jumps to 2-byte-aligned targets.  (c.jal is RV32-only and not used.)
 */
#define TEST_NAME "rv64uc"
#include "env.h"

    .option rvc

    /* ---- c.li / c.lui ---- */
    TEST_CASE(1, a0, 0, li a0, 5; c.li a0, 0)
    TEST_CASE(2, a0, 31, c.li a0, 31)
    TEST_CASE(3, a0, -32, c.li a0, -32)
    TEST_CASE(4, s1, -1, c.li s1, -1)
    TEST_CASE(5, a0, 0x1000, c.lui a0, 1)
    TEST_CASE(6, a0, 0x1f000, c.lui a0, 0x1f)
    TEST_CASE(7, a0, 0xfffffffffffe0000, c.lui a0, 0xfffe0)      /* nzimm sign-extended */
    TEST_CASE(8, a0, 0xfffffffffffff000, c.lui a0, 0xfffff)
    TEST_CASE(9, t1, 0x5000, c.lui t1, 5)

    /* ---- c.addi / c.addiw ---- */
    TEST_CASE(10, a0, 1, li a0, -30; c.addi a0, 31)
    TEST_CASE(11, a0, -31, li a0, 1; c.addi a0, -32)
    TEST_CASE(12, a0, 0x8000000000000000, li a0, 0x7fffffffffffffff; c.addi a0, 1)
    TEST_CASE(13, a0, 0xffffffff80000000, li a0, 0x7fffffff; c.addiw a0, 1)
    TEST_CASE(14, a0, 0xffffffff80000000, li a0, 0x1234567880000000; c.addiw a0, 0)   /* sext.w */
    TEST_CASE(15, a0, 0x7fffffe0, li a0, 0xffffffff80000000; c.addiw a0, -32)
    TEST_CASE(16, s0, 0x11, li s0, 0x10; c.addi s0, 1)

    /* ---- c.addi16sp / c.addi4spn ---- */
    TEST_CASE(17, a0, -512, mv s1, sp; c.addi16sp sp, -512; sub a0, sp, s1; mv sp, s1)
    TEST_CASE(18, a0, 496, mv s1, sp; c.addi16sp sp, 496; sub a0, sp, s1; mv sp, s1)
    TEST_CASE(19, a0, 16, mv s1, sp; c.addi16sp sp, 16; sub a0, sp, s1; mv sp, s1)
    TEST_CASE(20, a0, 4, c.addi4spn a0, sp, 4; sub a0, a0, sp)
    TEST_CASE(21, a0, 1020, c.addi4spn a0, sp, 1020; sub a0, a0, sp)
    TEST_CASE(22, s0, 520, c.addi4spn s0, sp, 520; sub s0, s0, sp)

    /* ---- shifts / andi ---- */
    TEST_CASE(23, a0, 0x8000000000000000, li a0, 1; c.slli a0, 63)
    TEST_CASE(24, a0, 0x100000000, li a0, 1; c.slli a0, 32)
    TEST_CASE(25, t2, 0xf0, li t2, 0xf; c.slli t2, 4)
    TEST_CASE(26, a0, 1, li a0, 0x8000000000000000; c.srli a0, 63)
    TEST_CASE(27, a0, 0x7fffffffffffffff, li a0, -1; c.srli a0, 1)
    TEST_CASE(28, a0, 0xffffffff, li a0, -1; c.srli a0, 32)
    TEST_CASE(29, a0, -1, li a0, 0x8000000000000000; c.srai a0, 63)
    TEST_CASE(30, a0, 0xc000000000000000, li a0, 0x8000000000000000; c.srai a0, 1)
    TEST_CASE(31, a0, 0x0000000000000080, li a0, 0x1000; c.srai a0, 5)
    TEST_CASE(32, a0, 0xffffffffffffff80, li a0, 0xffffffffffffff9f; c.andi a0, -32)
    TEST_CASE(33, a0, 0x1f, li a0, -1; c.andi a0, 31)
    TEST_CASE(34, a0, 0, li a0, -1; c.andi a0, 0)

    /* ---- register-register ---- */
    TEST_CASE(35, a0, 0x123456789, li a1, 0x123456789; c.mv a0, a1)
    TEST_CASE(36, t3, 0x123456789, li t4, 0x123456789; c.mv t3, t4)
    TEST_CASE(37, a0, 0x1000000000, li a0, 0xfffffffff; li a1, 1; c.add a0, a1)
    TEST_CASE(38, t3, 7, li t3, 3; li t4, 4; c.add t3, t4)
    TEST_CASE(39, a0, -1, li a0, 0; li a1, 1; c.sub a0, a1)
    TEST_CASE(40, a0, 0xff0f, li a0, 0xf0f0; li a1, 0x0fff; c.xor a0, a1)
    TEST_CASE(41, a0, 0xffff, li a0, 0xf0f0; li a1, 0x0fff; c.or a0, a1)
    TEST_CASE(42, a0, 0x00f0, li a0, 0xf0f0; li a1, 0x0fff; c.and a0, a1)
    TEST_CASE(43, a0, 0xffffffff80000000, li a0, 0x7fffffff; li a1, 1; c.addw a0, a1)
    TEST_CASE(44, a0, 0x7fffffff, li a0, 0xffffffff80000000; li a1, 1; c.subw a0, a1)
    TEST_CASE(45, a0, 2, li a0, 0x1234500000001; li a1, 0x6789000000001; c.addw a0, a1)
    TEST_CASE(46, a0, 0xffffffffffffffff, li a0, 0x1234500000000; li a1, 0x6789000000001; c.subw a0, a1)
    TEST_CASE(47, s1, 0x30, li s1, 0x10; li a5, 0x20; c.or s1, a5)

    /* ---- c.lw / c.ld / c.sw / c.sd ---- */
    TEST_CASE(48, a0, 0xffffffff80000001, la a1, cdat; c.lw a0, 0(a1))
    TEST_CASE(49, a0, 0x7fffffff, la a1, cdat; c.lw a0, 4(a1))
    TEST_CASE(50, a0, 0x7fffffff80000001, la a1, cdat; c.ld a0, 0(a1))
    TEST_CASE(51, a0, 0x1122334455667788, la a1, cdat; c.ld a0, 248(a1))
    TEST_CASE(52, a0, 0xffffffff99aabbcc, la a1, cdat; c.lw a0, 124(a1))
    TEST_CASE(53, a0, 0xfffffffffedcba98, la a1, sdat; li a2, 0x12345678fedcba98; c.sw a2, 8(a1); lw a0, 8(a1))
    TEST_CASE(54, a0, 0x12345678fedcba98, la a1, sdat; c.sd a2, 16(a1); ld a0, 16(a1))
    TEST_CASE(55, a0, 0x00000000fedcba98, la a1, sdat; sd zero, 120(a1); c.sw a2, 120(a1); ld a0, 120(a1))
    TEST_CASE(56, a0, 0x12345678fedcba98, la a1, sdat; c.sd a2, 248(a1); ld a0, 248(a1))
    TEST_CASE(57, s0, 0x7fffffff80000001, la s0, cdat; c.ld s0, 0(s0))

    /* ---- sp-relative: c.lwsp c.ldsp c.swsp c.sdsp (sp temporarily = buffer) ---- */
    TEST_CASE(58, a0, 0xffffffff80000001, mv s1, sp; la sp, cdat; c.lwsp a0, 0(sp); mv sp, s1)
    TEST_CASE(59, a0, 0x1122334455667788, mv s1, sp; la sp, cdat; c.ldsp a0, 248(sp); mv sp, s1)
    TEST_CASE(60, a0, 0x0123456789abcdef, mv s1, sp; la sp, cdat; c.ldsp a0, 504(sp); mv sp, s1)
    TEST_CASE(61, a0, 0x11223344, mv s1, sp; la sp, cdat; c.lwsp a0, 252(sp); mv sp, s1)
    TEST_CASE(62, t0, 0x1122334455667788, mv s1, sp; la sp, cdat; c.ldsp t0, 248(sp); mv sp, s1)
    TEST_CASE(63, a0, 0xffffffffcafebabe, mv s1, sp; la sp, sdat; li a2, 0xcafebabe; c.swsp a2, 252(sp); lw a0, 252(sp); mv sp, s1)
    TEST_CASE(64, a0, 0xdeadbeefcafebabe, mv s1, sp; la sp, sdat; li t1, 0xdeadbeefcafebabe; c.sdsp t1, 504(sp); ld a0, 504(sp); mv sp, s1)
    TEST_CASE(65, a0, 0x42, mv s1, sp; la sp, sdat; li a2, 0x42; c.sdsp a2, 0(sp); ld a0, 0(sp); mv sp, s1)

    /* ---- control transfer ---- */
    TEST_CASE(66, a0, 1, li a0, 1; c.j 2f; li a0, 2; 2: c.nop)
    TEST_CASE(67, a0, 3, li a0, 3; c.j 3f; 2: c.j 4f; 3: c.j 2b; li a0, 5; 4: c.nop)
    TEST_CASE(68, a0, 6, li a0, 6; la a1, 2f; c.jr a1; li a0, 7; 2: c.nop)
    /* c.jalr: ra = address of c.jalr + 2 */
    TEST_CASE(69, a0, 2, la a1, 3f; 2: c.jalr a1; j fail; 3: la a2, 2b; sub a0, ra, a2)
    TEST_CASE(70, a0, 9, li a0, 0; c.beqz a0, 2f; j fail; 2: li a0, 9)
    TEST_CASE(71, a0, 10, li a0, 1; c.beqz a0, 2f; li a0, 10; 2: c.nop)
    TEST_CASE(72, a0, 11, li a0, -1; c.bnez a0, 2f; j fail; 2: li a0, 11)
    TEST_CASE(73, a0, 0, li a0, 0; c.bnez a0, 2f; c.j 3f; 2: j fail; 3: c.nop)
    /* backward c.beqz / c.bnez loop */
    TEST_CASE(74, s0, 15, li s0, 0; li s1, 5; 2: c.add s0, s1; c.addi s1, -1; c.bnez s1, 2b)
    TEST_CASE(75, a0, 12, li a0, 0; c.j 3f; 2: li a0, 12; c.j 4f; 3: li a1, 0; c.beqz a1, 2b; j fail; 4: c.nop)
    /* x0 sources/destinations are hints: no architectural effect */
    TEST_CASE(76, a0, 0, c.nop; li a0, 0)

    /* ---- 32-bit instructions at addresses = 2 mod 4, 2-byte aligned jump targets ---- */
    .balign 4
test_77:
    li TESTNUM, 77
    .balign 4
    c.nop
    addi a0, zero, 0x123        /* 32-bit instruction at 2 mod 4 */
    FAIL_IF_NE(a0, 0x123)
    .balign 4
test_78:
    li TESTNUM, 78
    .option push
    .option norvc
    la a1, 2f                   /* 32-bit instructions */
    jalr ra, 0(a1)
    j fail
    .option pop
    .balign 4
    c.nop
2:  c.li a0, 5                  /* 2-byte aligned target */
    FAIL_IF_NE(a0, 5)
    la a2, 2b
    andi a2, a2, 3
    FAIL_IF_NE(a2, 2)
test_79:
    li TESTNUM, 79
    .balign 4
    c.nop
    .option push
    .option norvc
    auipc a0, 0                 /* auipc at 2 mod 4 */
    .option pop
    andi a0, a0, 3
    FAIL_IF_NE(a0, 2)
test_80:
    li TESTNUM, 80
    .balign 4
    c.nop
    .option push
    .option norvc
    jal a1, 3f                  /* jal at 2 mod 4: link = pc + 4 */
2:  j fail
    .option pop
3:  la a2, 2b
    FAIL_IF_NE2(a1, a2)

TEST_END

    .data
    .align 4
cdat:
    .word 0x80000001, 0x7fffffff
    .skip 124 - 8
    .word 0x99aabbcc
    .skip 248 - 128
    .dword 0x1122334455667788
    .skip 504 - 256
    .dword 0x0123456789abcdef
    .align 4
sdat:
    .skip 512
