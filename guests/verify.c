/*
 * verify: memory-integrity workload.  Region = size_mib MiB after the image.
 * Pass N (N = 1, 2, ...):
 *   for each page P: if N > 1, check P still holds pass N-1's pattern
 *                    (catches corruption between passes, e.g. across a
 *                    migration), then fill P with pass N's pattern;
 *   then check the whole region for pass N's pattern; print "OK pass N".
 * Pattern: word w of page P in pass N = seed(P, N) + w * 0x9e3779b97f4a7c15,
 * seed = splitmix64(P * 2^20 + N).  On the first mismatch prints
 * "CORRUPT page P" plus a "detail ..." line and exits with status 1.
 */
#include "ferry.h"

enum { CFG_SIZE_MIB, CFG_PASSES };
FERRY_CONFIG(
    FERRY_KEY("size_mib", 32),
    FERRY_KEY("passes", 0));         /* 0 = forever */

#define WPP   (FERRY_PAGE_SIZE / 8)
#define GOLD  0x9e3779b97f4a7c15ULL

static inline uint64_t page_seed(uint64_t page, uint64_t pass)
{
    return ferry_mix64((page << 20) + pass);
}

static void fill_page(uint64_t *w, uint64_t seed)
{
    for (uint64_t i = 0; i < WPP; i++) {
        w[i] = seed;
        seed += GOLD;
    }
}

/* Returns the index of the first bad word, or WPP if the page is intact. */
static uint64_t check_page(const uint64_t *w, uint64_t seed)
{
    for (uint64_t i = 0; i < WPP; i++) {
        if (w[i] != seed)
            return i;
        seed += GOLD;
    }
    return WPP;
}

static void corrupt(const uint64_t *w, uint64_t page, uint64_t pass, uint64_t word)
{
    uint64_t expect = page_seed(page, pass) + word * GOLD;
    ferry_printf("CORRUPT page %lu\n", (unsigned long)page);
    ferry_printf("detail pass %lu addr 0x%lx word %lu expected 0x%lx got 0x%lx\n",
                 (unsigned long)pass, (unsigned long)(uintptr_t)&w[word],
                 (unsigned long)word, (unsigned long)expect, (unsigned long)w[word]);
    ferry_exit(1);
}

int main(unsigned long hartid)
{
    (void)hartid;
    uint64_t size_mib = FERRY_CFG(CFG_SIZE_MIB);
    uint64_t passes = FERRY_CFG(CFG_PASSES);
    ferry_print_config("verify");

    uint64_t *region = (uint64_t *)ferry_region_base();
    uint64_t npages = size_mib * (FERRY_MIB / FERRY_PAGE_SIZE);

    for (uint64_t pass = 1; passes == 0 || pass <= passes; pass++) {
        for (uint64_t p = 0; p < npages; p++) {
            uint64_t *w = region + p * WPP;
            if (pass > 1) {
                uint64_t bad = check_page(w, page_seed(p, pass - 1));
                if (bad != WPP)
                    corrupt(w, p, pass - 1, bad);
            }
            fill_page(w, page_seed(p, pass));
        }
        /* Make sure the fills are not kept in registers / reordered past the
         * checks (they are plain memory, but be explicit). */
        __asm__ volatile("" ::: "memory");
        for (uint64_t p = 0; p < npages; p++) {
            uint64_t *w = region + p * WPP;
            uint64_t bad = check_page(w, page_seed(p, pass));
            if (bad != WPP)
                corrupt(w, p, pass, bad);
        }
        ferry_printf("OK pass %lu\n", (unsigned long)pass);
    }
    return 0;
}
