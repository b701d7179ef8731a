/*
 * rv64ui-aluw: RV64I 32-bit ("word") instructions addw subw sllw srlw sraw
 * addiw slliw srliw sraiw: upper 32 input bits are ignored, the 32-bit
 * result is sign-extended to 64 bits, shift amounts use rs2[4:0].
 */
#define TEST_NAME "rv64ui-aluw"
#include "env.h"

    /* ---- addw (upper 32 input bits ignored, result sign-extended from bit 31) ---- */
    TEST_RR(1, addw, 0x0, 0x0, 0x0)
    TEST_RR(2, addw, 0x2, 0x1, 0x1)
    TEST_RR(3, addw, 0xa, 0x3, 0x7)
    TEST_RR(4, addw, 0xffffffff80000000, 0x7fffffff, 0x1)
    TEST_RR(5, addw, 0x7fffffff, 0x80000000, 0xffffffffffffffff)
    TEST_RR(6, addw, 0x0, 0xffffffffffffffff, 0x1)
    TEST_RR(7, addw, 0xffffffffffffffff, 0xffffffff, 0x0)
    TEST_RR(8, addw, 0x23456789, 0x123456789, 0x100000000)
    TEST_RR(9, addw, 0xfffffffffffffffe, 0x7fffffffffffffff, 0x7fffffffffffffff)
    TEST_RR(10, addw, 0x0, 0x80000000, 0x80000000)
    TEST_RR(11, addw, 0xfffffffffffffffe, 0x7fffffff, 0x7fffffff)
    TEST_RR_D1(12, addw, 0xffffffff80000000, 0x7fffffff, 0x1)
    TEST_RR_D2(13, addw, 0x18, 0xd, 0xb)
    TEST_RR_DD(14, addw, 0xffffffff80000000, 0x40000000)

    /* ---- subw ---- */
    TEST_RR(15, subw, 0x0, 0x0, 0x0)
    TEST_RR(16, subw, 0x0, 0x1, 0x1)
    TEST_RR(17, subw, 0xfffffffffffffffc, 0x3, 0x7)
    TEST_RR(18, subw, 0x7fffffff, 0x80000000, 0x1)
    TEST_RR(19, subw, 0xffffffff80000000, 0x7fffffff, 0xffffffffffffffff)
    TEST_RR(20, subw, 0xffffffff80000000, 0x0, 0x80000000)
    TEST_RR(21, subw, 0xffffffffffffffff, 0x100000000, 0x1)
    TEST_RR(22, subw, 0x2, 0xdeadbeef00000005, 0x1234567800000003)
    TEST_RR_D1(23, subw, 0xffffffffffffffff, 0x0, 0x1)
    TEST_RR_D2(24, subw, 0x3, 0xe, 0xb)
    TEST_RR_DD(25, subw, 0x0, 0xd)

    /* ---- sllw (shift amount = rs2[4:0]) ---- */
    TEST_RR(26, sllw, 0x1, 0x1, 0x0)
    TEST_RR(27, sllw, 0x2, 0x1, 0x1)
    TEST_RR(28, sllw, 0x80, 0x1, 0x7)
    TEST_RR(29, sllw, 0xffffffff80000000, 0x1, 0x1f)
    TEST_RR(30, sllw, 0x1, 0x1, 0x20)
    TEST_RR(31, sllw, 0x2, 0x1, 0x21)
    TEST_RR(32, sllw, 0xffffffff80000000, 0xffffffffffffffff, 0x1f)
    TEST_RR(33, sllw, 0x48484000, 0x21212121, 0xe)
    TEST_RR(34, sllw, 0x9090908, 0xffffffff21212121, 0x3)
    TEST_RR(35, sllw, 0xffffffff80000000, 0x21212121, 0xffffffffffffffff)
    TEST_RR(36, sllw, 0x42424242, 0x21212121, 0xffffffffffffffe1)
    TEST_RR(37, sllw, 0xffffffffc0000000, 0x3, 0x1e)
    TEST_RR_D1(38, sllw, 0xffffffff80000000, 0x1, 0x1f)
    TEST_RR_D2(39, sllw, 0x4000, 0x1, 0xe)
    TEST_RR_DD(40, sllw, 0x18, 0x3)

    /* ---- srlw ---- */
    TEST_RR(41, srlw, 0xffffffff80000000, 0x80000000, 0x0)
    TEST_RR(42, srlw, 0x40000000, 0x80000000, 0x1)
    TEST_RR(43, srlw, 0x1, 0x80000000, 0x1f)
    TEST_RR(44, srlw, 0xffffffff80000000, 0x80000000, 0x20)
    TEST_RR(45, srlw, 0xffffffffffffffff, 0xffffffffffffffff, 0x0)
    TEST_RR(46, srlw, 0x7fffffff, 0xffffffffffffffff, 0x1)
    TEST_RR(47, srlw, 0x1, 0xffffffffffffffff, 0x1f)
    TEST_RR(48, srlw, 0x7ffffff, 0xffffffff7fffffff, 0x4)
    TEST_RR(49, srlw, 0x0, 0x21212121, 0xffffffffffffffff)
    TEST_RR(50, srlw, 0x40000000, 0x1234567880000000, 0x21)
    TEST_RR_D1(51, srlw, 0x1000000, 0x80000000, 0x7)
    TEST_RR_D2(52, srlw, 0x20000, 0x80000000, 0xe)
    TEST_RR_DD(53, srlw, 0x0, 0x7)

    /* ---- sraw ---- */
    TEST_RR(54, sraw, 0xffffffff80000000, 0x80000000, 0x0)
    TEST_RR(55, sraw, 0xffffffffc0000000, 0x80000000, 0x1)
    TEST_RR(56, sraw, 0xffffffffffffffff, 0x80000000, 0x1f)
    TEST_RR(57, sraw, 0xffffffff80000000, 0x80000000, 0x20)
    TEST_RR(58, sraw, 0x7fffffff, 0x7fffffff, 0x0)
    TEST_RR(59, sraw, 0x3fffffff, 0x7fffffff, 0x1)
    TEST_RR(60, sraw, 0x0, 0x7fffffff, 0x1f)
    TEST_RR(61, sraw, 0xffffffffffffffff, 0x81818181, 0xffffffffffffffff)
    TEST_RR(62, sraw, 0xfffffffff8181818, 0x181818181, 0x4)
    TEST_RR(63, sraw, 0x181818, 0xffffffff01818181, 0x4)
    TEST_RR(64, sraw, 0xffffffffc0000000, 0x1234567880000000, 0x21)
    TEST_RR_D1(65, sraw, 0xffffffffff000000, 0x80000000, 0x7)
    TEST_RR_D2(66, sraw, 0xfffffffffffe0000, 0x80000000, 0xe)
    TEST_RR_DD(67, sraw, 0x0, 0x7)

    /* ---- addiw ---- */
    TEST_RI(68, addiw, 0x0, 0x0, 0)
    TEST_RI(69, addiw, 0x2, 0x1, 1)
    TEST_RI(70, addiw, 0xffffffff80000000, 0x7fffffff, 1)
    TEST_RI(71, addiw, 0x7fffffff, 0x80000000, -1)
    TEST_RI(72, addiw, 0xfffffffffffff800, 0x0, -2048)
    TEST_RI(73, addiw, 0x7ff, 0x0, 2047)
    TEST_RI(74, addiw, 0xffffffffffffffff, 0xffffffff, 0)
    TEST_RI(75, addiw, 0x23456789, 0x123456789, 0)
    TEST_RI(76, addiw, 0x7fffffff, 0x7ffff800, 2047)
    TEST_RI(77, addiw, 0x0, 0xffffffffffffffff, 1)
    TEST_RI(78, addiw, 0xffffffffffffffff, 0x8000000000000000, -1)
    TEST_RI_D1(79, addiw, 0xffffffff80000000, 0x7fffffff, 1)

    /* ---- slliw ---- */
    TEST_RI(80, slliw, 0x1, 0x1, 0)
    TEST_RI(81, slliw, 0x2, 0x1, 1)
    TEST_RI(82, slliw, 0xffffffff80000000, 0x1, 31)
    TEST_RI(83, slliw, 0xffffffff80000000, 0xffffffffffffffff, 31)
    TEST_RI(84, slliw, 0x48484000, 0x21212121, 14)
    TEST_RI(85, slliw, 0x9090908, 0xffffffff21212121, 3)
    TEST_RI(86, slliw, 0x23456780, 0x12345678, 4)
    TEST_RI(87, slliw, 0xffffffff80000000, 0x2, 30)
    TEST_RI_D1(88, slliw, 0xffffffff80000000, 0x1, 31)

    /* ---- srliw ---- */
    TEST_RI(89, srliw, 0xffffffff80000000, 0x80000000, 0)
    TEST_RI(90, srliw, 0x40000000, 0x80000000, 1)
    TEST_RI(91, srliw, 0x1, 0x80000000, 31)
    TEST_RI(92, srliw, 0xffffffffffffffff, 0xffffffffffffffff, 0)
    TEST_RI(93, srliw, 0x7fffffff, 0xffffffffffffffff, 1)
    TEST_RI(94, srliw, 0x1, 0xffffffffffffffff, 31)
    TEST_RI(95, srliw, 0x8000000, 0x1234567880000000, 4)
    TEST_RI(96, srliw, 0x1, 0x100000002, 1)
    TEST_RI_D1(97, srliw, 0x1ffffff, 0xffffffffffffffff, 7)

    /* ---- sraiw ---- */
    TEST_RI(98, sraiw, 0xffffffff80000000, 0x80000000, 0)
    TEST_RI(99, sraiw, 0xffffffffc0000000, 0x80000000, 1)
    TEST_RI(100, sraiw, 0xffffffffffffffff, 0x80000000, 31)
    TEST_RI(101, sraiw, 0x7fffffff, 0x7fffffff, 0)
    TEST_RI(102, sraiw, 0x0, 0x7fffffff, 31)
    TEST_RI(103, sraiw, 0xfffffffff8181818, 0x181818181, 4)
    TEST_RI(104, sraiw, 0x181818, 0xffffffff01818181, 4)
    TEST_RI(105, sraiw, 0xfffffffff8000000, 0x1234567880000000, 4)
    TEST_RI(106, sraiw, 0xffffffffffffffff, 0xffffffff, 0)
    TEST_RI_D1(107, sraiw, 0xffffffffff000000, 0x80000000, 7)

    /* ---- x0 destination ---- */
    TEST_CASE(108, zero, 0, li a1, 5; li a2, 6; addw zero, a1, a2)
    TEST_CASE(109, zero, 0, li a1, 5; addiw zero, a1, 6)
    TEST_CASE(110, a0, 0, li a0, 5; addw a0, zero, zero)
    TEST_CASE(111, a0, 0xffffffff80000000, li a0, 0x80000000; addiw a0, a0, 0)   /* sext.w */

TEST_END
