/*
 * rv64ua: A extension.  All amo*.w / amo*.d operations (rd gets the old
 * memory value, .w results sign-extended, .w ops read/write only their
 * 32-bit word and use only rs2[31:0], signed vs unsigned min/max), aq/rl
 * encodings, rd = x0, rd == rs2, and LR/SC: SC without a reservation fails
 * with 1 and does not write, LR then SC to the same address succeeds with
 * 0, any SC consumes the reservation, SC outside the reservation fails,
 * lr.w sign-extends, sc.w writes 32 bits, an LR/SC increment loop.
 */
#define TEST_NAME "rv64ua"
#include "env.h"

/* amo_dat <- init; a0 <- inst(operand); check a0 == rd_exp and dword == mem_exp */
#define TEST_AMO(n, inst, init, operand, rd_exp, mem_exp) \
    TEST_CASE(n, a0, rd_exp, la a3, amo_dat; li a1, init; sd a1, 0(a3); li a2, operand; \
              inst a0, a2, (a3); ld a4, 0(a3)); \
    FAIL_IF_NE(a4, mem_exp)

    /* ---- amoswap.w / amoswap.d ---- */
    TEST_AMO(1, amoswap.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a500000001)
    TEST_AMO(2, amoswap.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a580000000)
    TEST_AMO(3, amoswap.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a500000001)
    TEST_AMO(4, amoswap.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a500000001)
    TEST_AMO(5, amoswap.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a5fffffffe)
    TEST_AMO(6, amoswap.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a50badf00d)
    TEST_AMO(7, amoswap.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x1)
    TEST_AMO(8, amoswap.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_AMO(9, amoswap.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0x1)
    TEST_AMO(10, amoswap.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0xfedcba987654321)
    TEST_AMO(11, amoswap.d, 0x5, 0xfffffffffffffffd, 0x5, 0xfffffffffffffffd)
    TEST_AMO(12, amoswap.d, 0x0, 0x8000000000000000, 0x0, 0x8000000000000000)

    /* ---- amoadd.w / amoadd.d ---- */
    TEST_AMO(13, amoadd.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a580000001)
    TEST_AMO(14, amoadd.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a5ffffffff)
    TEST_AMO(15, amoadd.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a500000000)
    TEST_AMO(16, amoadd.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a512345679)
    TEST_AMO(17, amoadd.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a5ffffffff)
    TEST_AMO(18, amoadd.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a5ea5baefc)
    TEST_AMO(19, amoadd.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x8000000000000001)
    TEST_AMO(20, amoadd.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0xffffffffffffffff)
    TEST_AMO(21, amoadd.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0x0)
    TEST_AMO(22, amoadd.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0x2222222222222211)
    TEST_AMO(23, amoadd.d, 0x5, 0xfffffffffffffffd, 0x5, 0x2)
    TEST_AMO(24, amoadd.d, 0x0, 0x8000000000000000, 0x0, 0x8000000000000000)

    /* ---- amoxor.w / amoxor.d ---- */
    TEST_AMO(25, amoxor.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a580000001)
    TEST_AMO(26, amoxor.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a5ffffffff)
    TEST_AMO(27, amoxor.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a5fffffffe)
    TEST_AMO(28, amoxor.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a512345679)
    TEST_AMO(29, amoxor.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a5ffffffff)
    TEST_AMO(30, amoxor.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a5d5004ee2)
    TEST_AMO(31, amoxor.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x8000000000000001)
    TEST_AMO(32, amoxor.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0xffffffffffffffff)
    TEST_AMO(33, amoxor.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0xfffffffffffffffe)
    TEST_AMO(34, amoxor.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0x1dd99dd11dd99dd1)
    TEST_AMO(35, amoxor.d, 0x5, 0xfffffffffffffffd, 0x5, 0xfffffffffffffff8)
    TEST_AMO(36, amoxor.d, 0x0, 0x8000000000000000, 0x0, 0x8000000000000000)

    /* ---- amoand.w / amoand.d ---- */
    TEST_AMO(37, amoand.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a500000000)
    TEST_AMO(38, amoand.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a500000000)
    TEST_AMO(39, amoand.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a500000001)
    TEST_AMO(40, amoand.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a500000000)
    TEST_AMO(41, amoand.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a500000000)
    TEST_AMO(42, amoand.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a50aadb00d)
    TEST_AMO(43, amoand.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x0)
    TEST_AMO(44, amoand.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x0)
    TEST_AMO(45, amoand.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0x1)
    TEST_AMO(46, amoand.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0x224422882244220)
    TEST_AMO(47, amoand.d, 0x5, 0xfffffffffffffffd, 0x5, 0x5)
    TEST_AMO(48, amoand.d, 0x0, 0x8000000000000000, 0x0, 0x0)

    /* ---- amoor.w / amoor.d ---- */
    TEST_AMO(49, amoor.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a580000001)
    TEST_AMO(50, amoor.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a5ffffffff)
    TEST_AMO(51, amoor.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a5ffffffff)
    TEST_AMO(52, amoor.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a512345679)
    TEST_AMO(53, amoor.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a5ffffffff)
    TEST_AMO(54, amoor.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a5dfadfeef)
    TEST_AMO(55, amoor.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x8000000000000001)
    TEST_AMO(56, amoor.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0xffffffffffffffff)
    TEST_AMO(57, amoor.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_AMO(58, amoor.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0x1ffddff99ffddff1)
    TEST_AMO(59, amoor.d, 0x5, 0xfffffffffffffffd, 0x5, 0xfffffffffffffffd)
    TEST_AMO(60, amoor.d, 0x0, 0x8000000000000000, 0x0, 0x8000000000000000)

    /* ---- amomin.w / amomin.d ---- */
    TEST_AMO(61, amomin.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a580000000)
    TEST_AMO(62, amomin.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a580000000)
    TEST_AMO(63, amomin.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a5ffffffff)
    TEST_AMO(64, amomin.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a500000001)
    TEST_AMO(65, amomin.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a5fffffffe)
    TEST_AMO(66, amomin.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a5deadbeef)
    TEST_AMO(67, amomin.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x8000000000000000)
    TEST_AMO(68, amomin.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_AMO(69, amomin.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_AMO(70, amomin.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0xfedcba987654321)
    TEST_AMO(71, amomin.d, 0x5, 0xfffffffffffffffd, 0x5, 0xfffffffffffffffd)
    TEST_AMO(72, amomin.d, 0x0, 0x8000000000000000, 0x0, 0x8000000000000000)

    /* ---- amomax.w / amomax.d ---- */
    TEST_AMO(73, amomax.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a500000001)
    TEST_AMO(74, amomax.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a57fffffff)
    TEST_AMO(75, amomax.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a500000001)
    TEST_AMO(76, amomax.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a512345678)
    TEST_AMO(77, amomax.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a500000001)
    TEST_AMO(78, amomax.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a50badf00d)
    TEST_AMO(79, amomax.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x1)
    TEST_AMO(80, amomax.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x7fffffffffffffff)
    TEST_AMO(81, amomax.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0x1)
    TEST_AMO(82, amomax.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0x123456789abcdef0)
    TEST_AMO(83, amomax.d, 0x5, 0xfffffffffffffffd, 0x5, 0x5)
    TEST_AMO(84, amomax.d, 0x0, 0x8000000000000000, 0x0, 0x0)

    /* ---- amominu.w / amominu.d ---- */
    TEST_AMO(85, amominu.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a500000001)
    TEST_AMO(86, amominu.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a57fffffff)
    TEST_AMO(87, amominu.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a500000001)
    TEST_AMO(88, amominu.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a500000001)
    TEST_AMO(89, amominu.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a500000001)
    TEST_AMO(90, amominu.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a50badf00d)
    TEST_AMO(91, amominu.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x1)
    TEST_AMO(92, amominu.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x7fffffffffffffff)
    TEST_AMO(93, amominu.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0x1)
    TEST_AMO(94, amominu.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0xfedcba987654321)
    TEST_AMO(95, amominu.d, 0x5, 0xfffffffffffffffd, 0x5, 0x5)
    TEST_AMO(96, amominu.d, 0x0, 0x8000000000000000, 0x0, 0x0)

    /* ---- amomaxu.w / amomaxu.d ---- */
    TEST_AMO(97, amomaxu.w, 0xa5a5a5a580000000, 0x1, 0xffffffff80000000, 0xa5a5a5a580000000)
    TEST_AMO(98, amomaxu.w, 0xa5a5a5a57fffffff, 0x80000000, 0x7fffffff, 0xa5a5a5a580000000)
    TEST_AMO(99, amomaxu.w, 0xa5a5a5a5ffffffff, 0x1, 0xffffffffffffffff, 0xa5a5a5a5ffffffff)
    TEST_AMO(100, amomaxu.w, 0xa5a5a5a512345678, 0xffffffff00000001, 0x12345678, 0xa5a5a5a512345678)
    TEST_AMO(101, amomaxu.w, 0xa5a5a5a500000001, 0xfffffffe, 0x1, 0xa5a5a5a5fffffffe)
    TEST_AMO(102, amomaxu.w, 0xa5a5a5a5deadbeef, 0xbadf00d, 0xffffffffdeadbeef, 0xa5a5a5a5deadbeef)
    TEST_AMO(103, amomaxu.d, 0x8000000000000000, 0x1, 0x8000000000000000, 0x8000000000000000)
    TEST_AMO(104, amomaxu.d, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000)
    TEST_AMO(105, amomaxu.d, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, 0xffffffffffffffff)
    TEST_AMO(106, amomaxu.d, 0x123456789abcdef0, 0xfedcba987654321, 0x123456789abcdef0, 0x123456789abcdef0)
    TEST_AMO(107, amomaxu.d, 0x5, 0xfffffffffffffffd, 0x5, 0xfffffffffffffffd)
    TEST_AMO(108, amomaxu.d, 0x0, 0x8000000000000000, 0x0, 0x8000000000000000)

    /* ---- .w AMO on the upper word of a dword ---- */
    TEST_CASE(109, a0, 0x11111111, la a3, amo_dat; li a1, 0x1111111180000000; sd a1, 0(a3); addi a5, a3, 4; li a2, 1; \
              amoadd.w a0, a2, (a5); ld a4, 0(a3))
    FAIL_IF_NE(a4, 0x1111111280000000)
    TEST_CASE(110, a0, 0xffffffff80000000, li a1, 0x80000000aaaaaaaa; sd a1, 0(a3); addi a5, a3, 4; li a2, 7; \
              amoswap.w a0, a2, (a5); ld a4, 0(a3))
    FAIL_IF_NE(a4, 0x00000007aaaaaaaa)

    /* ---- aq / rl encodings behave the same ---- */
    TEST_AMO(111, amoadd.d.aq, 10, 5, 10, 15)
    TEST_AMO(112, amoadd.d.rl, 10, 5, 10, 15)
    TEST_AMO(113, amoadd.d.aqrl, 10, 5, 10, 15)
    TEST_AMO(114, amoswap.w.aq, 0xfffffffe, 1, 0xfffffffffffffffe, 1)
    TEST_AMO(115, amoor.w.rl, 0x0f, 0xf0, 0x0f, 0xff)
    TEST_AMO(116, amomaxu.w.aqrl, 0x80000000, 1, 0xffffffff80000000, 0x80000000)

    /* ---- rd = x0: memory still updated; rd == rs2 ---- */
    TEST_CASE(117, a4, 0x30, la a3, amo_dat; li a1, 0x10; sd a1, 0(a3); li a2, 0x20; amoadd.d zero, a2, (a3); ld a4, 0(a3))
    TEST_CASE(118, zero, 0, amoswap.d zero, a2, (a3))
    TEST_CASE(119, a2, 0x20, li a1, 0x55; sd a1, 0(a3); li a2, 0x66; amoswap.d a2, a2, (a3); li a2, 0x20; ld a2, 0(a3); addi a2, a2, -0x46)
    TEST_CASE(120, a2, 0xffffffff80000000, li a1, 0x80000000; sd a1, 0(a3); li a2, 0x66; amoswap.w a2, a2, (a3))
    TEST_CASE(121, a4, 0x66, ld a4, 0(a3))

    /* ---- LR / SC ---- */
    /* sc.d with no reservation fails (1) and does not write */
    TEST_CASE(122, a0, 1, la a3, amo_dat; li a1, 0x1111; sd a1, 0(a3); li a2, 0x2222; sc.d a0, a2, (a3))
    TEST_CASE(123, a4, 0x1111, ld a4, 0(a3))
    /* lr.d / sc.d to the same address succeeds */
    TEST_CASE(124, a0, 0x1111, lr.d a0, (a3))
    TEST_CASE(125, a4, 0, li a2, 0x3333; sc.d a4, a2, (a3))
    TEST_CASE(126, a0, 0x3333, ld a0, 0(a3))
    /* the reservation is consumed: a second sc fails */
    TEST_CASE(127, a4, 1, li a2, 0x4444; sc.d a4, a2, (a3))
    TEST_CASE(128, a0, 0x3333, ld a0, 0(a3))
    /* lr.w sign-extends; sc.w writes only 32 bits */
    TEST_CASE(129, a0, 0xffffffff87654321, li a1, 0x1234567887654321; sd a1, 0(a3); lr.w a0, (a3))
    TEST_CASE(130, a4, 0, li a2, 0xffffffffcafebabe; sc.w a4, a2, (a3))
    TEST_CASE(131, a0, 0x12345678cafebabe, ld a0, 0(a3))
    /* lr.w / sc.w on the upper word */
    TEST_CASE(132, a0, 0x12345678, addi a5, a3, 4; lr.w a0, (a5))
    TEST_CASE(133, a4, 0, li a2, 0x0badc0de; sc.w a4, a2, (a5))
    TEST_CASE(134, a0, 0x0badc0decafebabe, ld a0, 0(a3))
    /* sc to an address outside the reservation set (another page) fails, no write */
    TEST_CASE(135, a4, 1, la a5, amo_far; li a1, 0x77; sd a1, 0(a5); lr.d a0, (a3); li a2, 0x99; sc.d a4, a2, (a5))
    TEST_CASE(136, a0, 0x77, ld a0, 0(a5))
    /* ... and that failed sc invalidated the reservation */
    TEST_CASE(137, a4, 1, sc.d a4, a2, (a3))
    TEST_CASE(138, a0, 0x0badc0decafebabe, ld a0, 0(a3))
    /* a newer lr replaces the reservation */
    TEST_CASE(139, a4, 0, lr.d a0, (a5); lr.d a0, (a3); li a2, 0x1234; sc.d a4, a2, (a3))
    TEST_CASE(140, a0, 0x1234, ld a0, 0(a3))
    /* aq/rl encodings */
    TEST_CASE(141, a4, 0, lr.d.aq a0, (a3); li a2, 0x5678; sc.d.rl a4, a2, (a3))
    TEST_CASE(142, a4, 0, lr.w.aqrl a0, (a3); li a2, 0x9abc; sc.w.aqrl a4, a2, (a3))
    TEST_CASE(143, a0, 0x9abc, ld a0, 0(a3))
    /* sc with rd = x0 still stores */
    TEST_CASE(144, a0, 0x4321, lr.d a1, (a3); li a2, 0x4321; sc.d zero, a2, (a3); ld a0, 0(a3))
    /* lr/sc increment loop */
    TEST_CASE(145, a0, 100, sd zero, 0(a3); li a1, 100; \
        2: lr.d a4, (a3); addi a4, a4, 1; sc.d a5, a4, (a3); bnez a5, 2b; addi a1, a1, -1; bnez a1, 2b; ld a0, 0(a3))
    TEST_CASE(146, a0, 0xffffffff80000001, li a1, 0x7ffffffe; sw a1, 0(a3); li a1, 3; \
        2: lr.w a4, (a3); addi a4, a4, 1; sc.w a5, a4, (a3); bnez a5, 2b; addi a1, a1, -1; bnez a1, 2b; lw a0, 0(a3))

TEST_END

    .data
    .align 3
amo_dat:
    .dword 0
    .align 12
amo_far:
    .dword 0
