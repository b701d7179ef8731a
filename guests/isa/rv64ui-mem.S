/*
 * rv64ui-mem: RV64I loads (lb lh lw ld lbu lhu lwu) and stores (sb sh sw sd):
 * little-endian byte order, sign/zero extension, positive/negative and
 * +-2 KiB offsets, stores writing only their own bytes, rd == rs1 loads,
 * x0 as load destination and store source.
 */
#define TEST_NAME "rv64ui-mem"
#include "env.h"

#define TEST_LD(n, inst, result, offset, base) \
    TEST_CASE(n, a0, result, la a1, base; inst a0, offset(a1))
#define TEST_ST(n, sinst, linst, result, value, offset, base) \
    TEST_CASE(n, a0, result, la a1, base; li a2, value; sinst a2, offset(a1); linst a0, offset(a1))
#define TEST_ST_DW(n, sinst, value, offset, result) \
    TEST_CASE(n, a0, result, la a1, sdat; li a0, 0xaaaaaaaaaaaaaaaa; sd a0, 0(a1); \
              li a2, value; sinst a2, offset(a1); ld a0, 0(a1))

    /* ---- lb ---- */
    TEST_LD(1, lb, 0x12, 0, tdat)
    TEST_LD(2, lb, 0x34, 1, tdat)
    TEST_LD(3, lb, 0xffffffffffffff9a, 4, tdat)
    TEST_LD(4, lb, 0xfffffffffffffff0, 7, tdat)
    TEST_LD(5, lb, 0xffffffffffffff80, 9, tdat)
    TEST_LD(6, lb, 0x7f, 10, tdat)
    TEST_LD(7, lb, 0xffffffffffffff80, 11, tdat)
    TEST_LD(8, lb, 0xffffffffffffff80, 23, tdat)
    TEST_LD(9, lb, 0x7f, 31, tdat)
    TEST_LD(10, lb, 0x7f, -1, tdat_end)

    /* ---- lbu ---- */
    TEST_LD(11, lbu, 0x12, 0, tdat)
    TEST_LD(12, lbu, 0x9a, 4, tdat)
    TEST_LD(13, lbu, 0xf0, 7, tdat)
    TEST_LD(14, lbu, 0x80, 9, tdat)
    TEST_LD(15, lbu, 0x7f, 10, tdat)
    TEST_LD(16, lbu, 0x80, 23, tdat)
    TEST_LD(17, lbu, 0x7f, 31, tdat)
    TEST_LD(18, lbu, 0x7f, -1, tdat_end)

    /* ---- lh ---- */
    TEST_LD(19, lh, 0x3412, 0, tdat)
    TEST_LD(20, lh, 0x7856, 2, tdat)
    TEST_LD(21, lh, 0xfffffffffffff0de, 6, tdat)
    TEST_LD(22, lh, 0xffffffffffff8001, 8, tdat)
    TEST_LD(23, lh, 0xffffffffffff807f, 10, tdat)
    TEST_LD(24, lh, 0xffffffffffff8000, 22, tdat)
    TEST_LD(25, lh, 0x7fff, 30, tdat)
    TEST_LD(26, lh, 0x7fff, -2, tdat_end)

    /* ---- lhu ---- */
    TEST_LD(27, lhu, 0x3412, 0, tdat)
    TEST_LD(28, lhu, 0x7856, 2, tdat)
    TEST_LD(29, lhu, 0xf0de, 6, tdat)
    TEST_LD(30, lhu, 0x8001, 8, tdat)
    TEST_LD(31, lhu, 0x807f, 10, tdat)
    TEST_LD(32, lhu, 0x8000, 22, tdat)
    TEST_LD(33, lhu, 0x7fff, 30, tdat)
    TEST_LD(34, lhu, 0x7fff, -2, tdat_end)

    /* ---- lw ---- */
    TEST_LD(35, lw, 0x78563412, 0, tdat)
    TEST_LD(36, lw, 0xfffffffff0debc9a, 4, tdat)
    TEST_LD(37, lw, 0xffffffff807f8001, 8, tdat)
    TEST_LD(38, lw, 0xff00ff, 12, tdat)
    TEST_LD(39, lw, 0xffffffff80000000, 20, tdat)
    TEST_LD(40, lw, 0x7fffffff, 28, tdat)
    TEST_LD(41, lw, 0x7fffffff, -4, tdat_end)

    /* ---- lwu ---- */
    TEST_LD(42, lwu, 0x78563412, 0, tdat)
    TEST_LD(43, lwu, 0xf0debc9a, 4, tdat)
    TEST_LD(44, lwu, 0x807f8001, 8, tdat)
    TEST_LD(45, lwu, 0xff00ff, 12, tdat)
    TEST_LD(46, lwu, 0x80000000, 20, tdat)
    TEST_LD(47, lwu, 0x7fffffff, 28, tdat)
    TEST_LD(48, lwu, 0x7fffffff, -4, tdat_end)

    /* ---- ld ---- */
    TEST_LD(49, ld, 0xf0debc9a78563412, 0, tdat)
    TEST_LD(50, ld, 0xff00ff807f8001, 8, tdat)
    TEST_LD(51, ld, 0x8000000000000000, 16, tdat)
    TEST_LD(52, ld, 0x7fffffffffffffff, 24, tdat)
    TEST_LD(53, ld, 0x7fffffffffffffff, -8, tdat_end)

    /* ---- stores: store then load back (truncation, sign/zero extension) ---- */
    TEST_ST(54, sb, lbu, 0xaa, 0xaa, 0, sdat)
    TEST_ST(55, sb, lb, 0xffffffffffffffaa, 0xaa, 1, sdat)
    TEST_ST(56, sb, lb, 0x34, 0x1234, 2, sdat)
    TEST_ST(57, sb, lbu, 0xa0, 0xfffffffffffff0a0, -1, sdat_end)
    TEST_ST(58, sh, lhu, 0xaa55, 0xaa55, 0, sdat)
    TEST_ST(59, sh, lh, 0xffffffffffffaa55, 0xaa55, 2, sdat)
    TEST_ST(60, sh, lh, 0x5678, 0x12345678, 4, sdat)
    TEST_ST(61, sh, lhu, 0xbeef, 0xbeef, -2, sdat_end)
    TEST_ST(62, sw, lwu, 0xaa55aa55, 0xaa55aa55, 0, sdat)
    TEST_ST(63, sw, lw, 0xffffffffaa55aa55, 0xaa55aa55, 4, sdat)
    TEST_ST(64, sw, lw, 0x56789abc, 0x123456789abc, 8, sdat)
    TEST_ST(65, sw, lw, 0x7eadbeef, 0x7eadbeef, -4, sdat_end)
    TEST_ST(66, sd, ld, 0xaa55aa55aa55aa55, 0xaa55aa55aa55aa55, 0, sdat)
    TEST_ST(67, sd, ld, 0x123456789abcdef, 0x123456789abcdef, 8, sdat)
    TEST_ST(68, sd, ld, 0x8000000000000000, 0x8000000000000000, -8, sdat_end)

    /* ---- stores only write their own bytes (dword prefilled with 0xaa..aa) ---- */
    TEST_ST_DW(69, sb, 0x11, 0, 0xaaaaaaaaaaaaaa11)
    TEST_ST_DW(70, sb, 0x22, 3, 0xaaaaaaaa22aaaaaa)
    TEST_ST_DW(71, sb, 0x33, 7, 0x33aaaaaaaaaaaaaa)
    TEST_ST_DW(72, sh, 0x4455, 0, 0xaaaaaaaaaaaa4455)
    TEST_ST_DW(73, sh, 0x6677, 2, 0xaaaaaaaa6677aaaa)
    TEST_ST_DW(74, sh, 0x8899, 6, 0x8899aaaaaaaaaaaa)
    TEST_ST_DW(75, sw, 0xdeadbeef, 0, 0xaaaaaaaadeadbeef)
    TEST_ST_DW(76, sw, 0x1234567, 4, 0x1234567aaaaaaaa)
    TEST_ST_DW(77, sd, 0x11223344556677, 0, 0x11223344556677)

    /* ---- byte order: dword store seen by narrower loads ---- */
    TEST_CASE(78, a0, 0x08, la a1, sdat; li a2, 0x0102030405060708; sd a2, 0(a1); lbu a0, 0(a1))
    TEST_CASE(79, a0, 0x01, lbu a0, 7(a1))
    TEST_CASE(80, a0, 0x0506, lhu a0, 2(a1))
    TEST_CASE(81, a0, 0x01020304, lwu a0, 4(a1))
    TEST_CASE(82, a0, 0x0304050607080910, la a1, sdat; li a2, 0x07080910; sw a2, 0(a1); \
              li a2, 0x0506; sh a2, 4(a1); li a2, 0x04; sb a2, 6(a1); li a2, 0x03; sb a2, 7(a1); ld a0, 0(a1))

    /* ---- rd == rs1, x0 destination / source ---- */
    TEST_CASE(83, a1, 0xf0debc9a78563412, la a1, tdat; ld a1, 0(a1))
    TEST_CASE(84, a1, 0xffffffffffffff80, la a1, tdat; lb a1, 9(a1))
    TEST_CASE(85, zero, 0, la a1, tdat; ld zero, 0(a1))
    TEST_CASE(86, a0, 0, la a1, sdat; li a0, -1; sd a0, 0(a1); sd zero, 0(a1); ld a0, 0(a1))
    TEST_CASE(87, a0, 0xffffffffffff0000, la a1, sdat; li a0, -1; sd a0, 0(a1); sh zero, 0(a1); ld a0, 0(a1))

    /* ---- 12-bit offset extremes ---- */
    TEST_CASE(88, a0, 0x1122334455667788, la a1, big; li a2, 0x1122334455667788; sd a2, 2040(a1); \
              la a1, big + 4088; ld a0, -2048(a1))
    TEST_CASE(89, a0, 0x77, la a1, big; li a2, 0x77; sb a2, 2047(a1); addi a1, a1, 2047; addi a1, a1, 2047; \
              addi a1, a1, 1; lbu a0, -2048(a1))
    TEST_CASE(90, a0, 0xffffffffcafef00d, la a1, big + 2048; li a2, 0xcafef00d; sw a2, -2048(a1); la a1, big; lw a0, 0(a1))

TEST_END

    .data
    .align 4
tdat:
    .dword 0xf0debc9a78563412
    .dword 0x00ff00ff807f8001
    .dword 0x8000000000000000
    .dword 0x7fffffffffffffff
tdat_end:
    .dword 0
sdat:
    .dword 0, 0, 0, 0
sdat_end:
    .dword 0
    .align 4
big:
    .skip 4096
