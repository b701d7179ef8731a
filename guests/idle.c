/*
 * idle: heartbeat guest.  Sleeps with the CLINT timer interrupt + WFI and
 * wakes every interval_ms; on each beat it writes one word into each of
 * `pages` pages after the image and prints "beat N" (N = 1, 2, ...).
 * Deadlines are absolute (start + N * interval), so the beat count does not
 * drift; if the guest was paused past several deadlines the missed beats run
 * back to back.
 */
#include "ferry.h"

enum { CFG_INTERVAL_MS, CFG_PAGES, CFG_BEATS };
FERRY_CONFIG(
    FERRY_KEY("interval_ms", 100),
    FERRY_KEY("pages", 4),
    FERRY_KEY("beats", 0));          /* 0 = forever */

int main(unsigned long hartid)
{
    (void)hartid;
    uint64_t interval_ms = FERRY_CFG(CFG_INTERVAL_MS);
    uint64_t pages = FERRY_CFG(CFG_PAGES);
    uint64_t beats = FERRY_CFG(CFG_BEATS);
    ferry_print_config("idle");

    volatile uint64_t *region = (volatile uint64_t *)ferry_region_base();
    const uint64_t words_per_page = FERRY_PAGE_SIZE / 8;
    uint64_t interval = interval_ms * FERRY_TICKS_PER_MS;

    ferry_timer_enable();
    uint64_t start = ferry_mtime();
    for (uint64_t n = 1; beats == 0 || n <= beats; n++) {
        if (interval)
            ferry_sleep_until(start + n * interval);
        for (uint64_t p = 0; p < pages; p++)
            region[p * words_per_page + (n % words_per_page)] = n;
        ferry_printf("beat %lu\n", (unsigned long)n);
    }
    return 0;
}
