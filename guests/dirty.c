/*
 * dirty: page-dirtying workload.  Writes every page of a size_mib region
 * (starting at the first page after the image) once per pass, in sequential
 * or PRNG-permuted order, optionally paced to `rate` pages per millisecond of
 * mtime.  After each pass prints "pass N" (N = 1, 2, ...).
 *
 * Each page write stores 8 words, one per 512 bytes: word k of page P in
 * pass N = (N << 32 | P) ^ (k << 60).  Before overwriting a page in pass
 * N >= 2 the guest checks that its first word still holds pass N-1's value
 * and otherwise prints "CORRUPT page P" and exits 1 (a cheap lost-write
 * detector; use `verify` for full-page checking).
 */
#include "ferry.h"

enum { CFG_SIZE_MIB, CFG_PATTERN, CFG_RATE, CFG_PASSES };
FERRY_CONFIG(
    FERRY_KEY("size_mib", 64),
    FERRY_KEY("pattern", 0),         /* 0 = sequential, 1 = random order */
    FERRY_KEY("rate", 0),            /* pages per ms, 0 = unlimited */
    FERRY_KEY("passes", 0));         /* 0 = forever */

/* Pacing: sleep only when ahead by more than SLACK; if more than MAX_LAG
 * behind (e.g. the VM was paused), restart the schedule instead of bursting. */
#define SLACK_TICKS   (FERRY_TICKS_PER_MS / 10)   /* 0.1 ms */
#define MAX_LAG_TICKS (100 * FERRY_TICKS_PER_MS)  /* 100 ms */

/* Keyed bijection on [0, 2^bits), used with cycle walking to permute [0, n). */
struct perm { uint64_t mask, a, b, c; unsigned s; };

static inline uint64_t perm_step(const struct perm *p, uint64_t x)
{
    x = (x * p->a) & p->mask;
    x ^= x >> p->s;
    x = (x + p->b) & p->mask;
    x = (x * p->c) & p->mask;
    x ^= x >> p->s;
    return x;
}

static inline uint64_t perm_apply(const struct perm *p, uint64_t x, uint64_t n)
{
    do
        x = perm_step(p, x);
    while (x >= n);
    return x;
}

int main(unsigned long hartid)
{
    (void)hartid;
    uint64_t size_mib = FERRY_CFG(CFG_SIZE_MIB);
    uint64_t pattern = FERRY_CFG(CFG_PATTERN);
    uint64_t rate = FERRY_CFG(CFG_RATE);
    uint64_t passes = FERRY_CFG(CFG_PASSES);
    ferry_print_config("dirty");

    volatile uint64_t *region = (volatile uint64_t *)ferry_region_base();
    const uint64_t wpp = FERRY_PAGE_SIZE / 8;  /* words per page */
    uint64_t npages = size_mib * (FERRY_MIB / FERRY_PAGE_SIZE);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;

    unsigned bits = 0;
    while ((1ULL << bits) < npages)
        bits++;
    struct perm pm = { (1ULL << bits) - 1, 1, 0, 1, (bits + 1) / 2 };
    if (pm.s == 0)
        pm.s = 1;

    if (rate)
        ferry_timer_enable();
    uint64_t t0 = ferry_mtime(), done = 0;

    for (uint64_t pass = 1; passes == 0 || pass <= passes; pass++) {
        if (pattern) {
            pm.a = ferry_xorshift64(&rng) | 1;
            pm.b = ferry_xorshift64(&rng);
            pm.c = ferry_xorshift64(&rng) | 1;
        }
        for (uint64_t i = 0; i < npages; i++) {
            if (rate) {
                uint64_t due = t0 + done * FERRY_TICKS_PER_MS / rate;
                uint64_t now = ferry_mtime();
                if (due > now + SLACK_TICKS) {
                    ferry_sleep_until(due);
                } else if (now > due + MAX_LAG_TICKS) {
                    t0 = now;
                    done = 0;
                }
            }
            uint64_t pg = pattern ? perm_apply(&pm, i, npages) : i;
            volatile uint64_t *w = region + pg * wpp;
            uint64_t v = (pass << 32) | pg;
            if (pass > 1 && w[0] != (v - (1ULL << 32))) {
                ferry_printf("CORRUPT page %lu\n", (unsigned long)pg);
                ferry_printf("detail pass %lu word 0 expected 0x%lx got 0x%lx\n",
                             (unsigned long)pass, (unsigned long)(v - (1ULL << 32)),
                             (unsigned long)w[0]);
                return 1;
            }
            for (uint64_t k = 0; k < 8; k++)
                w[k * (wpp / 8)] = v ^ (k << 60);
            done++;
        }
        ferry_printf("pass %lu\n", (unsigned long)pass);
    }
    return 0;
}
