/*
 * rv64fd-ops: F and D arithmetic against a reference, value by value.
 *
 * Every FP operation of F and D (add, sub, mul, div, sqrt, the four fused multiply-adds,
 * min/max, compares, fclass, sign injection, every fcvt between integers and S/D and between
 * S and D) runs over a table of operands (zeros, subnormals, the normal range edges,
 * infinities, quiet and signalling NaNs, values that round differently in each mode, integer
 * conversion limits) and over pseudo-random operands, in every rounding mode: the five static
 * ones and the dynamic mode with frm set to each of them. Each group prints one line: the
 * operation, the rounding mode and an FNV-1a hash of every (result bits, fflags) pair, so a
 * run under Ferry must print exactly what it prints under QEMU (the differential test
 * compares the whole console). The hash of all groups is also checked against the value a
 * QEMU 7.2 run printed (rv64fd-ops.expected.h), so the test fails under Ferry alone too.
 *
 * Operands go through integer registers (fmv.d.x / fmv.x.d): the compiler never sees a float.
 * Single-precision operands are NaN-boxed, except for a few deliberately unboxed ones (they
 * must read as the canonical NaN); results are read back as 64-bit patterns (boxing checked).
 */
#include <stdint.h>
#include "rv64fd-ops.expected.h"

typedef uint64_t u64;

#define UART 0x10000000UL
#define FINISHER 0x00100000UL

static void putc_(char c)
{
    volatile unsigned char *u = (volatile unsigned char *)UART;
    while ((u[5] & 0x20) == 0) { }
    u[0] = (unsigned char)c;
}

static void puts_(const char *s)
{
    while (*s) putc_(*s++);
}

static void puthex(u64 v)
{
    puts_("0x");
    for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]);
}

static void finish(uint32_t code)
{
    *(volatile uint32_t *)FINISHER = code;
    for (;;) { }
}

__attribute__((naked, section(".text.init"))) void _start(void)
{
    __asm__ volatile(
        "la sp, stack_top\n"
        "la t0, trap\n"
        "csrw mtvec, t0\n"
        "li t0, 0x2000\n"          /* mstatus.FS = Initial */
        "csrs mstatus, t0\n"
        "call main\n"
        "1: j 1b\n");
}

__attribute__((used, aligned(4))) static void trap(void)
{
    u64 cause, epc, tval;
    __asm__ volatile("csrr %0, mcause; csrr %1, mepc; csrr %2, mtval" : "=r"(cause), "=r"(epc), "=r"(tval));
    puts_("unexpected M-trap mcause=");
    puthex(cause);
    puts_(" epc=");
    puthex(epc);
    puts_(" tval=");
    puthex(tval);
    puts_("\nFAIL rv64fd-ops case 255\n");
    finish((255u << 16) | 0x3333);
}

__attribute__((used, aligned(16))) static unsigned char stack[8192];
__asm__(".globl stack_top\n.set stack_top, stack + 8192\n");

/* ---- the operations: one function per (instruction, rounding mode) ---- */

typedef u64 (*op_fn)(u64 a, u64 b, u64 c);

#define FR3(name, insn, rm) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; __asm__ volatile( \
        "fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n fmv.d.x ft2, %3\n " insn " ft3, ft0, ft1, ft2" rm "\n fmv.x.d %0, ft3" \
        : "=r"(r) : "r"(a), "r"(b), "r"(c) : "ft0", "ft1", "ft2", "ft3"); return r; }
#define FR2(name, insn, rm) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)c; __asm__ volatile( \
        "fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n " insn " ft3, ft0, ft1" rm "\n fmv.x.d %0, ft3" \
        : "=r"(r) : "r"(a), "r"(b) : "ft0", "ft1", "ft3"); return r; }
#define FR1(name, insn, rm) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)b; (void)c; __asm__ volatile( \
        "fmv.d.x ft0, %1\n " insn " ft3, ft0" rm "\n fmv.x.d %0, ft3" \
        : "=r"(r) : "r"(a) : "ft0", "ft3"); return r; }
/* f -> x */
#define XR2(name, insn, rm) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)c; __asm__ volatile( \
        "fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n " insn " %0, ft0, ft1" rm \
        : "=r"(r) : "r"(a), "r"(b) : "ft0", "ft1"); return r; }
#define XR1(name, insn, rm) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)b; (void)c; __asm__ volatile( \
        "fmv.d.x ft0, %1\n " insn " %0, ft0" rm \
        : "=r"(r) : "r"(a) : "ft0"); return r; }
/* x -> f */
#define FX1(name, insn, rm) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)b; (void)c; __asm__ volatile( \
        insn " ft3, %1" rm "\n fmv.x.d %0, ft3" \
        : "=r"(r) : "r"(a) : "ft3"); return r; }

/* Exact conversions (fcvt.d.w, fcvt.d.wu, fcvt.d.s) with an rm field, which binutils does not
 * accept as an operand: encoded with .insn (opcode OP-FP, funct3 = rm, funct7, rs2 selector). */
#define FXI(name, f7, sel, rmv) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)b; (void)c; __asm__ volatile( \
        ".insn r 0x53, " #rmv ", " #f7 ", ft3, %1, " sel "\n fmv.x.d %0, ft3" \
        : "=r"(r) : "r"(a) : "ft3"); return r; }
#define FRI(name, f7, sel, rmv) \
    static u64 name(u64 a, u64 b, u64 c) { u64 r; (void)b; (void)c; __asm__ volatile( \
        "fmv.d.x ft0, %1\n .insn r 0x53, " #rmv ", " #f7 ", ft3, ft0, " sel "\n fmv.x.d %0, ft3" \
        : "=r"(r) : "r"(a) : "ft0", "ft3"); return r; }
#define RM_INSN(KIND, base, f7, sel) \
    KIND(base##_rne, f7, sel, 0) KIND(base##_rtz, f7, sel, 1) KIND(base##_rdn, f7, sel, 2) \
    KIND(base##_rup, f7, sel, 3) KIND(base##_rmm, f7, sel, 4) KIND(base##_dyn, f7, sel, 7)

/* Rounding-mode variants: index 0..4 static RNE RTZ RDN RUP RMM, 5 dynamic. */
#define RM_ALL(KIND, base, insn) \
    KIND(base##_rne, insn, ", rne") KIND(base##_rtz, insn, ", rtz") KIND(base##_rdn, insn, ", rdn") \
    KIND(base##_rup, insn, ", rup") KIND(base##_rmm, insn, ", rmm") KIND(base##_dyn, insn, ", dyn")
#define RM_LIST(base) { base##_rne, base##_rtz, base##_rdn, base##_rup, base##_rmm, base##_dyn }

RM_ALL(FR2, fadd_s, "fadd.s") RM_ALL(FR2, fsub_s, "fsub.s") RM_ALL(FR2, fmul_s, "fmul.s") RM_ALL(FR2, fdiv_s, "fdiv.s")
RM_ALL(FR1, fsqrt_s, "fsqrt.s")
RM_ALL(FR3, fmadd_s, "fmadd.s") RM_ALL(FR3, fmsub_s, "fmsub.s") RM_ALL(FR3, fnmsub_s, "fnmsub.s") RM_ALL(FR3, fnmadd_s, "fnmadd.s")
RM_ALL(XR1, fcvt_w_s, "fcvt.w.s") RM_ALL(XR1, fcvt_wu_s, "fcvt.wu.s") RM_ALL(XR1, fcvt_l_s, "fcvt.l.s") RM_ALL(XR1, fcvt_lu_s, "fcvt.lu.s")
RM_ALL(FX1, fcvt_s_w, "fcvt.s.w") RM_ALL(FX1, fcvt_s_wu, "fcvt.s.wu") RM_ALL(FX1, fcvt_s_l, "fcvt.s.l") RM_ALL(FX1, fcvt_s_lu, "fcvt.s.lu")
RM_ALL(FR1, fcvt_s_d, "fcvt.s.d")

RM_ALL(FR2, fadd_d, "fadd.d") RM_ALL(FR2, fsub_d, "fsub.d") RM_ALL(FR2, fmul_d, "fmul.d") RM_ALL(FR2, fdiv_d, "fdiv.d")
RM_ALL(FR1, fsqrt_d, "fsqrt.d")
RM_ALL(FR3, fmadd_d, "fmadd.d") RM_ALL(FR3, fmsub_d, "fmsub.d") RM_ALL(FR3, fnmsub_d, "fnmsub.d") RM_ALL(FR3, fnmadd_d, "fnmadd.d")
RM_ALL(XR1, fcvt_w_d, "fcvt.w.d") RM_ALL(XR1, fcvt_wu_d, "fcvt.wu.d") RM_ALL(XR1, fcvt_l_d, "fcvt.l.d") RM_ALL(XR1, fcvt_lu_d, "fcvt.lu.d")
RM_INSN(FXI, fcvt_d_w, 0x69, "x0") RM_INSN(FXI, fcvt_d_wu, 0x69, "x1") RM_ALL(FX1, fcvt_d_l, "fcvt.d.l") RM_ALL(FX1, fcvt_d_lu, "fcvt.d.lu")
RM_INSN(FRI, fcvt_d_s, 0x21, "f0")

/* No rounding mode. */
FR2(fmin_s, "fmin.s", "") FR2(fmax_s, "fmax.s", "") FR2(fsgnj_s, "fsgnj.s", "") FR2(fsgnjn_s, "fsgnjn.s", "") FR2(fsgnjx_s, "fsgnjx.s", "")
XR2(feq_s, "feq.s", "") XR2(flt_s, "flt.s", "") XR2(fle_s, "fle.s", "") XR1(fclass_s, "fclass.s", "") XR1(fmv_x_w, "fmv.x.w", "")
FX1(fmv_w_x, "fmv.w.x", "")
FR2(fmin_d, "fmin.d", "") FR2(fmax_d, "fmax.d", "") FR2(fsgnj_d, "fsgnj.d", "") FR2(fsgnjn_d, "fsgnjn.d", "") FR2(fsgnjx_d, "fsgnjx.d", "")
XR2(feq_d, "feq.d", "") XR2(flt_d, "flt.d", "") XR2(fle_d, "fle.d", "") XR1(fclass_d, "fclass.d", "")

/* ---- operands ---- */

static const uint32_t s_vals[] = {
    0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x807fffff, 0x00800000, 0x80800000,
    0x00800001, 0x00400000, 0x00000003, 0x3f800000, 0xbf800000, 0x3f800001, 0x3f7fffff, 0x3fffffff,
    0x40000000, 0x3f000000, 0x3fc00000, 0xc0200000, 0x40400000, 0x40490fdb, 0x3eaaaaab, 0x33800000,
    0x34000000, 0x4b800000, 0x4b7fffff, 0x4b800001, 0x4effffff, 0x4f000000, 0xcf000000, 0xcf000001,
    0x4f800000, 0x5effffff, 0x5f000000, 0xdf000000, 0x5f800000, 0x7f000000, 0x7f7fffff, 0xff7fffff,
    0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xffa00000, 0x7fc12345, 0x0ff00000,
};

static const u64 d_vals[] = {
    0x0000000000000000, 0x8000000000000000, 0x0000000000000001, 0x8000000000000001,
    0x000fffffffffffff, 0x800fffffffffffff, 0x0010000000000000, 0x8010000000000000,
    0x0010000000000001, 0x0008000000000000, 0x0000000000000003, 0x3ff0000000000000,
    0xbff0000000000000, 0x3ff0000000000001, 0x3fefffffffffffff, 0x3fffffffffffffff,
    0x4000000000000000, 0x3fe0000000000000, 0x3ff8000000000000, 0xc004000000000000,
    0x4008000000000000, 0x400921fb54442d18, 0x3fd5555555555555, 0x3ca0000000000000,
    0x3cb0000000000000, 0x4340000000000000, 0x433fffffffffffff, 0x4340000000000001,
    0x41dfffffffc00000, 0x41dfffffffe00000, 0x41e0000000000000, 0xc1e0000000000000,
    0xc1e0000000200000, 0x41efffffffe00000, 0x41f0000000000000, 0x43dfffffffffffff,
    0x43e0000000000000, 0xc3e0000000000000, 0x43f0000000000000, 0x7fe0000000000000,
    0x7fefffffffffffff, 0xffefffffffffffff, 0x7ff0000000000000, 0xfff0000000000000,
    0x7ff8000000000000, 0xfff8000000000000, 0x7ff0000000000001, 0xfff4000000000000,
    0x7ff8000012345678, 0x36a0000000000000, 0x3810000000000000, 0x380fffffffffffff,
    0x47efffffe0000000, 0x47efffffffffffff, 0x47f0000000000000, 0x3690000000000000,
};

static const u64 i_vals[] = {
    0, 1, 2, 3, 0xffffffffffffffff, 0xfffffffffffffffe, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe,
    0x80000001, 0x00ffffff, 0x01000000, 0x01000001, 0x01000003, 0x7fffff80, 0x7fffffc0, 0xffffff80,
    0x001fffffffffffff, 0x0020000000000000, 0x0020000000000001, 0x0020000000000003,
    0x7fffffffffffffff, 0x8000000000000000, 0x8000000000000001, 0xfffffffffffff800, 0x7ffffffffffffc00,
    0xffffffff80000000, 0xffffffff7fffffff, 0x123456789abcdef0, 0xfedcba9876543210, 0x00000000ffffff7f,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define BOX(s) (0xffffffff00000000ULL | (uint32_t)(s))

static u64 rng = 0x9e3779b97f4a7c15ULL;

static u64 next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random operands: full-range bits, near 1.0, tiny (subnormal/underflow), near overflow. */
static u64 rand_d(void)
{
    u64 r = next(), m = next() & 0x000fffffffffffffULL, s = r & 0x8000000000000000ULL;
    switch ((r >> 8) & 3) {
    case 0: return next();
    case 1: return s | ((u64)(1023 - 4 + ((r >> 16) % 9)) << 52) | m;
    case 2: return s | ((u64)((r >> 16) % 60) << 52) | m;
    default: return s | ((u64)(2046 - ((r >> 16) % 6)) << 52) | m;
    }
}

static u64 rand_s(void)
{
    u64 r = next();
    uint32_t m = (uint32_t)(next() & 0x7fffff), s = (uint32_t)(r & 0x80000000ULL);
    switch ((r >> 8) & 3) {
    case 0: return BOX(next());
    case 1: return BOX(s | ((127 - 4 + (uint32_t)((r >> 16) % 9)) << 23) | m);
    case 2: return BOX(s | ((uint32_t)((r >> 16) % 30) << 23) | m);
    default: return BOX(s | ((254 - (uint32_t)((r >> 16) % 6)) << 23) | m);
    }
}

static u64 rand_i(void)
{
    u64 r = next();
    switch (r & 3) {
    case 0: return next();
    case 1: return next() >> (r >> 2) % 64;
    case 2: return (u64)((int64_t)next() >> ((r >> 2) % 64));
    default: return (u64)(int32_t)next();
    }
}

/* ---- hashing and reporting ---- */

static u64 hash, total = 0xcbf29ce484222325ULL, cases;

static void mix(u64 v)
{
    for (int i = 0; i < 8; i++) {
        hash ^= (v >> (8 * i)) & 0xff;
        hash *= 0x100000001b3ULL;
    }
}

static void one(op_fn f, u64 a, u64 b, u64 c)
{
    u64 fl;
    __asm__ volatile("csrw fflags, zero");
    u64 r = f(a, b, c);
    __asm__ volatile("csrr %0, fflags" : "=r"(fl));
    mix(r);
    mix(fl);
    cases++;
}

static const char *const rm_names[] = { "rne", "rtz", "rdn", "rup", "rmm", "dyn" };

static void report(const char *name, const char *rm, u64 n)
{
    puts_(name);
    putc_(' ');
    puts_(rm);
    putc_(' ');
    puthex(hash);
    putc_('\n');
    (void)n;
    for (int i = 0; i < 8; i++) {
        total ^= (hash >> (8 * i)) & 0xff;
        total *= 0x100000001b3ULL;
    }
}

enum kind { F_S, F_D, I_X };

static u64 pick(enum kind k, unsigned i, unsigned n_table, u64 seed_i)
{
    (void)seed_i;
    if (k == F_S) return i < n_table ? BOX(s_vals[i]) : rand_s();
    if (k == F_D) return i < n_table ? d_vals[i] : rand_d();
    return i < n_table ? i_vals[i] : rand_i();
}

static unsigned table_len(enum kind k)
{
    return k == F_S ? N(s_vals) : k == F_D ? N(d_vals) : N(i_vals);
}

/* arity 1: table + random; arity 2: table x table + random pairs; arity 3: sub-table cubed + random triples */
static void run_group(const char *name, op_fn f, int arity, enum kind k)
{
    unsigned n = table_len(k);
    u64 saved = rng;
    hash = 0xcbf29ce484222325ULL;
    if (arity == 1) {
        for (unsigned i = 0; i < n; i++) one(f, pick(k, i, n, 0), 0, 0);
        for (unsigned i = 0; i < 400; i++) one(f, pick(k, n, n, 0), 0, 0);
    } else if (arity == 2) {
        for (unsigned i = 0; i < n; i++)
            for (unsigned j = 0; j < n; j++) one(f, pick(k, i, n, 0), pick(k, j, n, 0), 0);
        for (unsigned i = 0; i < 400; i++) {
            u64 a = pick(k, n, n, 0), b = pick(k, n, n, 0);
            one(f, a, b, 0);
        }
    } else {
        /* every 3rd table value, cubed */
        for (unsigned i = 0; i < n; i += 3)
            for (unsigned j = 1; j < n; j += 3)
                for (unsigned l = 2; l < n; l += 3) one(f, pick(k, i, n, 0), pick(k, j, n, 0), pick(k, l, n, 0));
        for (unsigned i = 0; i < 600; i++) {
            u64 a = pick(k, n, n, 0), b = pick(k, n, n, 0), c = pick(k, n, n, 0);
            one(f, a, b, c);
            /* c near -a*b, to make the addition cancel */
            one(f, a, b, c ^ (k == F_S ? 0x80000000ULL : 0x8000000000000000ULL));
        }
    }
    rng = saved; /* every rounding mode sees the same operands */
    (void)name;
}

static void set_frm(u64 rm)
{
    __asm__ volatile("csrw frm, %0" : : "r"(rm));
}

static void rm_groups(const char *name, const op_fn fs[6], int arity, enum kind k)
{
    for (int rm = 0; rm < 5; rm++) {
        set_frm(rm == 0 ? 4 : 0); /* a static rm must ignore frm */
        run_group(name, fs[rm], arity, k);
        report(name, rm_names[rm], 0);
    }
    for (int frm = 0; frm < 5; frm++) {
        set_frm((u64)frm);
        run_group(name, fs[5], arity, k);
        char label[6] = { 'd', 'y', 'n', (char)('0' + frm), 0, 0 };
        report(name, label, 0);
    }
    set_frm(0);
    next(); /* the next operation gets other random operands */
}

static void plain_group(const char *name, op_fn f, int arity, enum kind k)
{
    run_group(name, f, arity, k);
    report(name, "-", 0);
    next();
}

#define RMG(base, name, arity, kind) do { static const op_fn fs[6] = RM_LIST(base); rm_groups(name, fs, arity, kind); } while (0)

/* Unboxed single-precision operands read as the canonical NaN. */
static void unboxed(void)
{
    static const u64 raw[] = { 0x000000003f800000ULL, 0x7fffffff3f800000ULL, 0xfffffffe40000000ULL, 0x3ff0000000000000ULL };
    hash = 0xcbf29ce484222325ULL;
    for (unsigned i = 0; i < N(raw); i++) {
        one(fadd_s_rne, raw[i], BOX(0x3f800000), 0);
        one(fmin_s, raw[i], BOX(0x3f800000), 0);
        one(fsgnj_s, raw[i], BOX(0xbf800000), 0);
        one(fsgnj_s, BOX(0x3f800000), raw[i], 0);
        one(fclass_s, raw[i], 0, 0);
        one(fmv_x_w, raw[i], 0, 0);
        one(feq_s, raw[i], raw[i], 0);
        one(fcvt_d_s_rne, raw[i], 0, 0);
        one(fcvt_w_s_rne, raw[i], 0, 0);
        one(fmadd_s_rne, BOX(0x3f800000), BOX(0x3f800000), raw[i]);
    }
    report("unboxed", "-", 0);
}

int main(void)
{
    RMG(fadd_s, "fadd.s", 2, F_S);
    RMG(fsub_s, "fsub.s", 2, F_S);
    RMG(fmul_s, "fmul.s", 2, F_S);
    RMG(fdiv_s, "fdiv.s", 2, F_S);
    RMG(fsqrt_s, "fsqrt.s", 1, F_S);
    RMG(fmadd_s, "fmadd.s", 3, F_S);
    RMG(fmsub_s, "fmsub.s", 3, F_S);
    RMG(fnmsub_s, "fnmsub.s", 3, F_S);
    RMG(fnmadd_s, "fnmadd.s", 3, F_S);
    RMG(fcvt_w_s, "fcvt.w.s", 1, F_S);
    RMG(fcvt_wu_s, "fcvt.wu.s", 1, F_S);
    RMG(fcvt_l_s, "fcvt.l.s", 1, F_S);
    RMG(fcvt_lu_s, "fcvt.lu.s", 1, F_S);
    RMG(fcvt_s_w, "fcvt.s.w", 1, I_X);
    RMG(fcvt_s_wu, "fcvt.s.wu", 1, I_X);
    RMG(fcvt_s_l, "fcvt.s.l", 1, I_X);
    RMG(fcvt_s_lu, "fcvt.s.lu", 1, I_X);
    RMG(fcvt_s_d, "fcvt.s.d", 1, F_D);
    plain_group("fmin.s", fmin_s, 2, F_S);
    plain_group("fmax.s", fmax_s, 2, F_S);
    plain_group("fsgnj.s", fsgnj_s, 2, F_S);
    plain_group("fsgnjn.s", fsgnjn_s, 2, F_S);
    plain_group("fsgnjx.s", fsgnjx_s, 2, F_S);
    plain_group("feq.s", feq_s, 2, F_S);
    plain_group("flt.s", flt_s, 2, F_S);
    plain_group("fle.s", fle_s, 2, F_S);
    plain_group("fclass.s", fclass_s, 1, F_S);
    plain_group("fmv.x.w", fmv_x_w, 1, F_D);
    plain_group("fmv.w.x", fmv_w_x, 1, I_X);

    RMG(fadd_d, "fadd.d", 2, F_D);
    RMG(fsub_d, "fsub.d", 2, F_D);
    RMG(fmul_d, "fmul.d", 2, F_D);
    RMG(fdiv_d, "fdiv.d", 2, F_D);
    RMG(fsqrt_d, "fsqrt.d", 1, F_D);
    RMG(fmadd_d, "fmadd.d", 3, F_D);
    RMG(fmsub_d, "fmsub.d", 3, F_D);
    RMG(fnmsub_d, "fnmsub.d", 3, F_D);
    RMG(fnmadd_d, "fnmadd.d", 3, F_D);
    RMG(fcvt_w_d, "fcvt.w.d", 1, F_D);
    RMG(fcvt_wu_d, "fcvt.wu.d", 1, F_D);
    RMG(fcvt_l_d, "fcvt.l.d", 1, F_D);
    RMG(fcvt_lu_d, "fcvt.lu.d", 1, F_D);
    RMG(fcvt_d_w, "fcvt.d.w", 1, I_X);
    RMG(fcvt_d_wu, "fcvt.d.wu", 1, I_X);
    RMG(fcvt_d_l, "fcvt.d.l", 1, I_X);
    RMG(fcvt_d_lu, "fcvt.d.lu", 1, I_X);
    RMG(fcvt_d_s, "fcvt.d.s", 1, F_S);
    plain_group("fmin.d", fmin_d, 2, F_D);
    plain_group("fmax.d", fmax_d, 2, F_D);
    plain_group("fsgnj.d", fsgnj_d, 2, F_D);
    plain_group("fsgnjn.d", fsgnjn_d, 2, F_D);
    plain_group("fsgnjx.d", fsgnjx_d, 2, F_D);
    plain_group("feq.d", feq_d, 2, F_D);
    plain_group("flt.d", flt_d, 2, F_D);
    plain_group("fle.d", fle_d, 2, F_D);
    plain_group("fclass.d", fclass_d, 1, F_D);

    unboxed();

    puts_("cases ");
    puthex(cases);
    puts_(" total ");
    puthex(total);
    putc_('\n');
    if (total != EXPECTED_TOTAL) {
        puts_("FAIL rv64fd-ops case 1\n");
        finish((1u << 16) | 0x3333);
    }
    puts_("PASS rv64fd-ops\n");
    finish(0x5555);
    return 0;
}
