/* hello: minimal smoke test of the console, printf and exit. */
#include "ferry.h"

FERRY_CONFIG_EMPTY();

int main(unsigned long hartid)
{
    ferry_printf("Hello from Ferry guest (hart %lu)\n", hartid);
    ferry_printf("printf: %d %d %u %x %lx %s %c %%\n",
                 42, -7, 4000000000u, 0xdeadbeefu, 0x123456789abcdef0UL, "ok", 'Z');
    ferry_printf("64-bit: %ld %lu 0x%016lx [%5d] [%-5d] [%05d]\n",
                 -9223372036854775807L - 1, 18446744073709551615UL, 0xabcUL, 12, 34, -56);
    uint64_t x = 1;
    for (int i = 0; i < 10; i++)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ferry_printf("lcg10 = 0x%lx, 1000000007 * 998244353 = %lu\n",
                 (unsigned long)x, 1000000007UL * 998244353UL);
    return 0;
}
