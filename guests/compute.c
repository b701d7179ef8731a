/*
 * compute: CPU-bound kernel with a fixed, known instruction count.
 *   kernel 0: ALU loop (mul, divu, remuw, shifts, xor/add/sub, a
 *             data-dependent branch whose two paths have equal length).
 *   kernel 1: load/store loop over a 64 KiB array (at the first page after
 *             the image): one pseudo-random ld/sd pair plus a sequential
 *             lw/lbu/lh/sw/sb group per iteration.
 * Both loops are hand-written assembly of exactly 20 instructions per
 * iteration (whichever way the branch goes), so the loop executes
 * 20 * iterations instructions; setup/teardown add < 0.2 M (kernel 1 array
 * init + checksum) and printing.  Default: 10 M iterations = 200 M
 * instructions.  Prints "compute kernel K result 0x..." (depends on every
 * iteration) and exits 0; unknown kernel: prints an error, exits 2.
 */
#include "ferry.h"

enum { CFG_KERNEL, CFG_ITERATIONS };
FERRY_CONFIG(
    FERRY_KEY("kernel", 0),
    FERRY_KEY("iterations", 10000000));

#define ARRAY_BYTES (64 * 1024)

static uint64_t kernel_alu(uint64_t iters)
{
    uint64_t x = 0x0123456789abcdefULL, y = 0x9e3779b97f4a7c15ULL, acc = 0;
    const uint64_t k = 0x5851f42d4c957f2dULL;
    if (!iters)
        return 0;
    __asm__ volatile(
        "1:\n\t"
        "mul   t0, %[x], %[k]\n\t"      /*  1 */
        "addi  t0, t0, 1013\n\t"        /*  2 */
        "srli  t1, t0, 29\n\t"          /*  3 */
        "xor   %[x], t0, t1\n\t"        /*  4 */
        "add   %[y], %[y], %[x]\n\t"    /*  5 */
        "slli  t1, %[y], 13\n\t"        /*  6 */
        "xor   %[y], %[y], t1\n\t"      /*  7 */
        "srli  t1, %[y], 7\n\t"         /*  8 */
        "xor   %[y], %[y], t1\n\t"      /*  9 */
        "ori   t2, %[y], 1\n\t"         /* 10 */
        "divu  t3, %[x], t2\n\t"        /* 11 */
        "remuw t4, %[x], t2\n\t"        /* 12 */
        "add   %[acc], %[acc], t3\n\t"  /* 13 */
        "xor   %[acc], %[acc], t4\n\t"  /* 14 */
        "andi  t1, %[x], 64\n\t"        /* 15 */
        "beqz  t1, 2f\n\t"              /* 16 */
        "sub   %[acc], %[acc], %[y]\n\t"/* 17 (bit clear path) */
        "j     3f\n"                    /* 18 */
        "2:\n\t"
        "addi  %[acc], %[acc], 77\n\t"  /* 17 (bit set path)   */
        "nop\n"                         /* 18 */
        "3:\n\t"
        "addi  %[n], %[n], -1\n\t"      /* 19 */
        "bnez  %[n], 1b\n\t"            /* 20 */
        : [x] "+r"(x), [y] "+r"(y), [acc] "+r"(acc), [n] "+r"(iters)
        : [k] "r"(k)
        : "t0", "t1", "t2", "t3", "t4");
    return x ^ y ^ acc;
}

static uint64_t kernel_mem(uint64_t iters)
{
    uint64_t *arr = (uint64_t *)ferry_region_base();
    for (uint64_t i = 0; i < ARRAY_BYTES / 8; i++)
        arr[i] = ferry_mix64(i);

    uint64_t s = 1, acc = 0, seq = 0;
    const uint64_t m = 6364136223846793005ULL;   /* LCG, full period mod 2^64 */
    const uint64_t mask = ARRAY_BYTES - 8;
    if (iters) {
        __asm__ volatile(
            "1:\n\t"
            "mul   %[s], %[s], %[m]\n\t"        /*  1 */
            "addi  %[s], %[s], 1\n\t"           /*  2 */
            "srli  t0, %[s], 48\n\t"            /*  3 */
            "andi  t0, t0, -8\n\t"              /*  4 */
            "add   t0, t0, %[base]\n\t"         /*  5 */
            "ld    t1, 0(t0)\n\t"               /*  6 */
            "add   %[acc], %[acc], t1\n\t"      /*  7 */
            "sd    %[acc], 0(t0)\n\t"           /*  8 */
            "add   t2, %[base], %[seq]\n\t"     /*  9 */
            "lw    t3, 0(t2)\n\t"               /* 10 */
            "lbu   t4, 5(t2)\n\t"               /* 11 */
            "add   t3, t3, t4\n\t"              /* 12 */
            "sw    t3, 4(t2)\n\t"               /* 13 */
            "sb    t4, 1(t2)\n\t"               /* 14 */
            "lh    t5, 2(t2)\n\t"               /* 15 */
            "add   %[acc], %[acc], t5\n\t"      /* 16 */
            "addi  %[seq], %[seq], 8\n\t"       /* 17 */
            "and   %[seq], %[seq], %[mask]\n\t" /* 18 */
            "addi  %[n], %[n], -1\n\t"          /* 19 */
            "bnez  %[n], 1b\n\t"                /* 20 */
            : [s] "+r"(s), [acc] "+r"(acc), [seq] "+r"(seq), [n] "+r"(iters)
            : [m] "r"(m), [mask] "r"(mask), [base] "r"(arr)
            : "t0", "t1", "t2", "t3", "t4", "t5", "memory");
    }
    uint64_t h = acc ^ s;
    for (uint64_t i = 0; i < ARRAY_BYTES / 8; i++)
        h = (h ^ arr[i]) * 0x100000001b3ULL;
    return h;
}

int main(unsigned long hartid)
{
    (void)hartid;
    uint64_t kernel = FERRY_CFG(CFG_KERNEL);
    uint64_t iters = FERRY_CFG(CFG_ITERATIONS);
    ferry_print_config("compute");

    uint64_t r;
    if (kernel == 0)
        r = kernel_alu(iters);
    else if (kernel == 1)
        r = kernel_mem(iters);
    else {
        ferry_printf("compute: unknown kernel %lu\n", (unsigned long)kernel);
        return 2;
    }
    ferry_printf("compute kernel %lu result 0x%lx\n", (unsigned long)kernel,
                 (unsigned long)r);
    return 0;
}
