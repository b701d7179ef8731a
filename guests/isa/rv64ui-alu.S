/*
 * rv64ui-alu: RV64I 64-bit register-register and register-immediate
 * arithmetic, logic, compare and shift instructions, including shift
 * amount masking (only the low 6 bits of rs2 are used), immediate sign
 * extension, INT64_MIN/INT64_MAX edge cases, rd aliasing rs1/rs2, and
 * x0 as source and destination.
 */
#define TEST_NAME "rv64ui-alu"
#include "env.h"

    /* ---- add ---- */
    TEST_RR(1, add, 0x0, 0x0, 0x0)
    TEST_RR(2, add, 0x2, 0x1, 0x1)
    TEST_RR(3, add, 0xa, 0x3, 0x7)
    TEST_RR(4, add, 0x0, 0xffffffffffffffff, 0x1)
    TEST_RR(5, add, 0x8000000000000000, 0x7fffffffffffffff, 0x1)
    TEST_RR(6, add, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff)
    TEST_RR(7, add, 0x100000000, 0xffffffff, 0x1)
    TEST_RR(8, add, 0x80000000, 0x7fffffff, 0x1)
    TEST_RR(9, add, 0xffffffff7fffffff, 0xffffffff80000000, 0xffffffffffffffff)
    TEST_RR_D1(10, add, 0x18, 0xd, 0xb)
    TEST_RR_D2(11, add, 0x19, 0xe, 0xb)
    TEST_RR_DD(12, add, 0x1a, 0xd)

    /* ---- sub ---- */
    TEST_RR(13, sub, 0x0, 0x0, 0x0)
    TEST_RR(14, sub, 0x0, 0x1, 0x1)
    TEST_RR(15, sub, 0xfffffffffffffffc, 0x3, 0x7)
    TEST_RR(16, sub, 0xffffffffffffffff, 0x0, 0x1)
    TEST_RR(17, sub, 0x7fffffffffffffff, 0x8000000000000000, 0x1)
    TEST_RR(18, sub, 0x8000000000000000, 0x7fffffffffffffff, 0xffffffffffffffff)
    TEST_RR(19, sub, 0x8000000000000000, 0x0, 0x8000000000000000)
    TEST_RR(20, sub, 0x100000000, 0xffffffff, 0xffffffffffffffff)
    TEST_RR_D1(21, sub, 0x2, 0xd, 0xb)
    TEST_RR_D2(22, sub, 0x3, 0xe, 0xb)
    TEST_RR_DD(23, sub, 0x0, 0xd)

    /* ---- sll ---- */
    TEST_RR(24, sll, 0x1, 0x1, 0x0)
    TEST_RR(25, sll, 0x2, 0x1, 0x1)
    TEST_RR(26, sll, 0x80, 0x1, 0x7)
    TEST_RR(27, sll, 0x80000000, 0x1, 0x1f)
    TEST_RR(28, sll, 0x100000000, 0x1, 0x20)
    TEST_RR(29, sll, 0x8000000000000000, 0x1, 0x3f)
    TEST_RR(30, sll, 0xfffffffffffffffe, 0xffffffffffffffff, 0x1)
    TEST_RR(31, sll, 0x84848484000, 0x21212121, 0xe)
    TEST_RR(32, sll, 0x8000000000000000, 0x21212121, 0x3f)
    TEST_RR(33, sll, 0x21212121, 0x21212121, 0x40)
    TEST_RR(34, sll, 0x42424242, 0x21212121, 0x41)
    TEST_RR(35, sll, 0x8000000000000000, 0x21212121, 0xffffffffffffffff)
    TEST_RR(36, sll, 0x42424242, 0x21212121, 0xffffffffffffffc1)
    TEST_RR_D1(37, sll, 0x80, 0x1, 0x7)
    TEST_RR_D2(38, sll, 0x4000, 0x1, 0xe)
    TEST_RR_DD(39, sll, 0x18, 0x3)

    /* ---- srl ---- */
    TEST_RR(40, srl, 0x8000000000000000, 0x8000000000000000, 0x0)
    TEST_RR(41, srl, 0x4000000000000000, 0x8000000000000000, 0x1)
    TEST_RR(42, srl, 0x100000000000000, 0x8000000000000000, 0x7)
    TEST_RR(43, srl, 0x100000000, 0x8000000000000000, 0x1f)
    TEST_RR(44, srl, 0x80000000, 0x8000000000000000, 0x20)
    TEST_RR(45, srl, 0x1, 0x8000000000000000, 0x3f)
    TEST_RR(46, srl, 0x7fffffffffffffff, 0xffffffffffffffff, 0x1)
    TEST_RR(47, srl, 0x7fffffff, 0xffffffffffffffff, 0x21)
    TEST_RR(48, srl, 0x848484848484, 0x2121212121212121, 0xe)
    TEST_RR(49, srl, 0x2121212121212121, 0x2121212121212121, 0x40)
    TEST_RR(50, srl, 0x0, 0x2121212121212121, 0xffffffffffffffff)
    TEST_RR(51, srl, 0xffffffff, 0xffffffff80000000, 0x20)
    TEST_RR_D1(52, srl, 0x100000000000000, 0x8000000000000000, 0x7)
    TEST_RR_D2(53, srl, 0x2000000000000, 0x8000000000000000, 0xe)
    TEST_RR_DD(54, srl, 0x0, 0x7)

    /* ---- sra ---- */
    TEST_RR(55, sra, 0x8000000000000000, 0x8000000000000000, 0x0)
    TEST_RR(56, sra, 0xc000000000000000, 0x8000000000000000, 0x1)
    TEST_RR(57, sra, 0xff00000000000000, 0x8000000000000000, 0x7)
    TEST_RR(58, sra, 0xffffffff00000000, 0x8000000000000000, 0x1f)
    TEST_RR(59, sra, 0xffffffff80000000, 0x8000000000000000, 0x20)
    TEST_RR(60, sra, 0xffffffffffffffff, 0x8000000000000000, 0x3f)
    TEST_RR(61, sra, 0x0, 0x7fffffffffffffff, 0x3f)
    TEST_RR(62, sra, 0xffffffffffffffff, 0xffffffffffffffff, 0x3f)
    TEST_RR(63, sra, 0x20606060606, 0x81818181818181, 0xe)
    TEST_RR(64, sra, 0xfffe060606060606, 0x8181818181818181, 0xe)
    TEST_RR(65, sra, 0x8181818181818181, 0x8181818181818181, 0x40)
    TEST_RR(66, sra, 0xffffffffffffffff, 0x8181818181818181, 0xffffffffffffffff)
    TEST_RR(67, sra, 0xffffffff03030303, 0x8181818181818181, 0xffffffffffffffdf)
    TEST_RR_D1(68, sra, 0xff00000000000000, 0x8000000000000000, 0x7)
    TEST_RR_D2(69, sra, 0xfffe000000000000, 0x8000000000000000, 0xe)
    TEST_RR_DD(70, sra, 0x0, 0x7)

    /* ---- slt ---- */
    TEST_RR(71, slt, 0x0, 0x0, 0x0)
    TEST_RR(72, slt, 0x1, 0x0, 0x1)
    TEST_RR(73, slt, 0x0, 0x1, 0x0)
    TEST_RR(74, slt, 0x1, 0xffffffffffffffff, 0x0)
    TEST_RR(75, slt, 0x0, 0x0, 0xffffffffffffffff)
    TEST_RR(76, slt, 0x1, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_RR(77, slt, 0x0, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_RR(78, slt, 0x1, 0x8000000000000000, 0x0)
    TEST_RR(79, slt, 0x1, 0xfffffffffffffffe, 0xffffffffffffffff)
    TEST_RR(80, slt, 0x0, 0xffffffffffffffff, 0xfffffffffffffffe)
    TEST_RR_D1(81, slt, 0x1, 0xffffffffffffffff, 0x1)
    TEST_RR_D2(82, slt, 0x0, 0x1, 0xffffffffffffffff)
    TEST_RR_DD(83, slt, 0x0, 0x5)

    /* ---- sltu ---- */
    TEST_RR(84, sltu, 0x0, 0x0, 0x0)
    TEST_RR(85, sltu, 0x1, 0x0, 0x1)
    TEST_RR(86, sltu, 0x0, 0x1, 0x0)
    TEST_RR(87, sltu, 0x0, 0xffffffffffffffff, 0x0)
    TEST_RR(88, sltu, 0x1, 0x0, 0xffffffffffffffff)
    TEST_RR(89, sltu, 0x0, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_RR(90, sltu, 0x1, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_RR(91, sltu, 0x1, 0xfffffffffffffffe, 0xffffffffffffffff)
    TEST_RR(92, sltu, 0x1, 0xffffffff, 0x100000000)
    TEST_RR_D1(93, sltu, 0x1, 0x1, 0xffffffffffffffff)
    TEST_RR_D2(94, sltu, 0x0, 0xffffffffffffffff, 0x1)
    TEST_RR_DD(95, sltu, 0x0, 0x5)

    /* ---- xor ---- */
    TEST_RR(96, xor, 0xf00ff00ff00ff00f, 0xff00ff00ff00ff00, 0xf0f0f0f0f0f0f0f)
    TEST_RR(97, xor, 0xff00ff00ff00ff00, 0xff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0)
    TEST_RR(98, xor, 0x0, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_RR(99, xor, 0xffffffffffffffff, 0x0, 0xffffffffffffffff)
    TEST_RR(100, xor, 0xffffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_RR_D1(101, xor, 0xf00ff00f, 0xff00ff00, 0xf0f0f0f)
    TEST_RR_D2(102, xor, 0xf00ff00f, 0xff00ff00, 0xf0f0f0f)
    TEST_RR_DD(103, xor, 0x0, 0x1234)

    /* ---- or ---- */
    TEST_RR(104, or, 0xff0fff0fff0fff0f, 0xff00ff00ff00ff00, 0xf0f0f0f0f0f0f0f)
    TEST_RR(105, or, 0xfff0fff0fff0fff0, 0xff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0)
    TEST_RR(106, or, 0x0, 0x0, 0x0)
    TEST_RR(107, or, 0x8000000000000001, 0x8000000000000000, 0x1)
    TEST_RR_D1(108, or, 0xff0fff0f, 0xff00ff00, 0xf0f0f0f)
    TEST_RR_D2(109, or, 0xff0fff0f, 0xff00ff00, 0xf0f0f0f)
    TEST_RR_DD(110, or, 0x1234, 0x1234)

    /* ---- and ---- */
    TEST_RR(111, and, 0xf000f000f000f00, 0xff00ff00ff00ff00, 0xf0f0f0f0f0f0f0f)
    TEST_RR(112, and, 0xf000f000f000f0, 0xff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0)
    TEST_RR(113, and, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_RR(114, and, 0x0, 0xffffffffffffffff, 0x0)
    TEST_RR_D1(115, and, 0xf000f00, 0xff00ff00, 0xf0f0f0f)
    TEST_RR_D2(116, and, 0xf000f00, 0xff00ff00, 0xf0f0f0f)
    TEST_RR_DD(117, and, 0x1234, 0x1234)

    /* ---- addi ---- */
    TEST_RI(118, addi, 0x0, 0x0, 0)
    TEST_RI(119, addi, 0x2, 0x1, 1)
    TEST_RI(120, addi, 0xa, 0x3, 7)
    TEST_RI(121, addi, 0xfffffffffffff800, 0x0, -2048)
    TEST_RI(122, addi, 0x7ff, 0x0, 2047)
    TEST_RI(123, addi, 0x7fffffffffffffff, 0x8000000000000000, -1)
    TEST_RI(124, addi, 0x8000000000000000, 0x7fffffffffffffff, 1)
    TEST_RI(125, addi, 0x0, 0xffffffffffffffff, 1)
    TEST_RI(126, addi, 0x80000000, 0x7fffffff, 1)
    TEST_RI(127, addi, 0x1000007fe, 0xffffffff, 2047)
    TEST_RI(128, addi, 0xffffffff7ffff800, 0xffffffff80000000, -2048)
    TEST_RI_D1(129, addi, 0x18, 0xd, 11)

    /* ---- slti ---- */
    TEST_RI(130, slti, 0x0, 0x0, 0)
    TEST_RI(131, slti, 0x1, 0x0, 1)
    TEST_RI(132, slti, 0x0, 0x1, 0)
    TEST_RI(133, slti, 0x1, 0xffffffffffffffff, 0)
    TEST_RI(134, slti, 0x0, 0x0, -1)
    TEST_RI(135, slti, 0x1, 0x8000000000000000, -2048)
    TEST_RI(136, slti, 0x0, 0x7fffffffffffffff, 2047)
    TEST_RI(137, slti, 0x1, 0xfffffffffffff7ff, -2048)
    TEST_RI(138, slti, 0x0, 0x7ff, 2047)
    TEST_RI_D1(139, slti, 0x1, 0xfffffffffffffffb, -4)

    /* ---- sltiu (immediate is sign-extended, then compared unsigned) ---- */
    TEST_RI(140, sltiu, 0x0, 0x0, 0)
    TEST_RI(141, sltiu, 0x1, 0x0, 1)
    TEST_RI(142, sltiu, 0x0, 0x1, 0)
    TEST_RI(143, sltiu, 0x1, 0x0, -1)
    TEST_RI(144, sltiu, 0x0, 0xffffffffffffffff, -1)
    TEST_RI(145, sltiu, 0x1, 0xfffffffffffffffe, -1)
    TEST_RI(146, sltiu, 0x0, 0xfffffffffffff800, -2048)
    TEST_RI(147, sltiu, 0x1, 0xfffffffffffff7ff, -2048)
    TEST_RI(148, sltiu, 0x0, 0x7fffffffffffffff, 2047)
    TEST_RI(149, sltiu, 0x1, 0x7fe, 2047)
    TEST_RI_D1(150, sltiu, 0x1, 0x1, -1)

    /* ---- xori ---- */
    TEST_RI(151, xori, 0xff00ff00ff00fff0, 0xff00ff00ff00ff, -241)
    TEST_RI(152, xori, 0xff00ff00ff00f80f, 0xff00ff00ff00ff00, 1807)
    TEST_RI(153, xori, 0xffffffffffffedcb, 0x1234, -1)
    TEST_RI(154, xori, 0xfffffffffffff800, 0x0, -2048)
    TEST_RI(155, xori, 0xfffffffffffff800, 0xffffffffffffffff, 2047)
    TEST_RI_D1(156, xori, 0xff00f800, 0xff00ff0f, 1807)

    /* ---- ori ---- */
    TEST_RI(157, ori, 0xffffffffffffff0f, 0xff00ff00ff00ff00, -241)
    TEST_RI(158, ori, 0xff00ff0, 0xff00ff0, 240)
    TEST_RI(159, ori, 0xfffffffffffff800, 0x0, -2048)
    TEST_RI(160, ori, 0x80000000000007ff, 0x8000000000000000, 2047)
    TEST_RI_D1(161, ori, 0xff00fff0, 0xff00ff00, 240)

    /* ---- andi ---- */
    TEST_RI(162, andi, 0xff00ff00ff00ff00, 0xff00ff00ff00ff00, -241)
    TEST_RI(163, andi, 0xf0, 0xff00ff0, 240)
    TEST_RI(164, andi, 0xfffffffffffff800, 0xffffffffffffffff, -2048)
    TEST_RI(165, andi, 0x7ff, 0xffffffffffffffff, 2047)
    TEST_RI(166, andi, 0xf, 0xff00ff, 1807)
    TEST_RI_D1(167, andi, 0x0, 0xff00ff00, 240)

    /* ---- slli ---- */
    TEST_RI(168, slli, 0x1, 0x1, 0)
    TEST_RI(169, slli, 0x2, 0x1, 1)
    TEST_RI(170, slli, 0x80, 0x1, 7)
    TEST_RI(171, slli, 0x80000000, 0x1, 31)
    TEST_RI(172, slli, 0x100000000, 0x1, 32)
    TEST_RI(173, slli, 0x8000000000000000, 0x1, 63)
    TEST_RI(174, slli, 0xfffffffffffffffe, 0xffffffffffffffff, 1)
    TEST_RI(175, slli, 0x8000000000000000, 0xffffffffffffffff, 63)
    TEST_RI(176, slli, 0x84848484000, 0x21212121, 14)
    TEST_RI(177, slli, 0x4242424200000000, 0x21212121, 33)
    TEST_RI_D1(178, slli, 0x80, 0x1, 7)

    /* ---- srli ---- */
    TEST_RI(179, srli, 0x8000000000000000, 0x8000000000000000, 0)
    TEST_RI(180, srli, 0x4000000000000000, 0x8000000000000000, 1)
    TEST_RI(181, srli, 0x100000000, 0x8000000000000000, 31)
    TEST_RI(182, srli, 0x80000000, 0x8000000000000000, 32)
    TEST_RI(183, srli, 0x1, 0x8000000000000000, 63)
    TEST_RI(184, srli, 0x7fffffffffffffff, 0xffffffffffffffff, 1)
    TEST_RI(185, srli, 0x7fffffff, 0xffffffffffffffff, 33)
    TEST_RI(186, srli, 0x1, 0xffffffffffffffff, 63)
    TEST_RI(187, srli, 0x848484848484, 0x2121212121212121, 14)
    TEST_RI_D1(188, srli, 0x100000000000000, 0x8000000000000000, 7)

    /* ---- srai ---- */
    TEST_RI(189, srai, 0x8000000000000000, 0x8000000000000000, 0)
    TEST_RI(190, srai, 0xc000000000000000, 0x8000000000000000, 1)
    TEST_RI(191, srai, 0xffffffff00000000, 0x8000000000000000, 31)
    TEST_RI(192, srai, 0xffffffff80000000, 0x8000000000000000, 32)
    TEST_RI(193, srai, 0xffffffffffffffff, 0x8000000000000000, 63)
    TEST_RI(194, srai, 0x1, 0x7fffffffffffffff, 62)
    TEST_RI(195, srai, 0xfffe060606060606, 0x8181818181818181, 14)
    TEST_RI(196, srai, 0x38c0c0c0, 0x7181818181818181, 33)
    TEST_RI(197, srai, 0xffffffffffffffff, 0xffffffff80000000, 31)
    TEST_RI_D1(198, srai, 0xff00000000000000, 0x8000000000000000, 7)

    /* ---- x0 as destination is discarded, as source reads zero ---- */
    TEST_CASE(199, zero, 0, li a1, 5; li a2, 6; add zero, a1, a2)
    TEST_CASE(200, zero, 0, addi zero, zero, 123)
    TEST_CASE(201, a0, 0, li a0, 9; add a0, zero, zero)
    TEST_CASE(202, a0, 0x55, li a1, 0x55; or a0, zero, a1)
    TEST_CASE(203, a0, -7, li a1, 7; sub a0, zero, a1)
    TEST_CASE(204, a0, 1, li a1, 7; sltu a0, zero, a1)     /* snez */
    TEST_CASE(205, a0, 0, sltu a0, zero, zero)
    TEST_CASE(206, a0, 0, li a0, 1; slli a0, zero, 5)
    TEST_CASE(207, a0, 0, li a0, 1; lui zero, 0x12345; add a0, zero, zero)
    TEST_CASE(208, a0, 1, li a1, 0; sltiu a0, a1, 1)         /* seqz */
    TEST_CASE(209, a0, 0, li a1, 0; slt a0, a1, zero)

TEST_END
