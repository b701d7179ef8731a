/* Ferry guest runtime (freestanding). */
#include "ferry.h"

/* ------------------------------------------------------------------ UART */

#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void ferry_putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)FERRY_UART_BASE;
    while (!(uart[UART_LSR] & UART_LSR_THRE))
        ;
    uart[UART_THR] = (uint8_t)c;
}

void ferry_puts(const char *s)
{
    while (*s)
        ferry_putc(*s++);
}

/* ---------------------------------------------------------------- printf */
/* Supports: %d %i %u %x %X %p %s %c %%, length l/ll/z, flags '0' '-',
 * field width (number or *).  All integer conversions are 64-bit safe. */

static void put_rep(char c, int n)
{
    while (n-- > 0)
        ferry_putc(c);
}

static int put_field(const char *s, int len, int width, int left, char pad)
{
    int n = len < width ? width : len;
    if (!left) {
        /* keep a leading '-' in front of zero padding */
        if (pad == '0' && len > 0 && s[0] == '-') {
            ferry_putc('-');
            s++; len--; width--;
        }
        put_rep(pad, width - len);
    }
    for (int i = 0; i < len; i++)
        ferry_putc(s[i]);
    if (left)
        put_rep(' ', width - len);
    return n;
}

int ferry_vprintf(const char *fmt, va_list ap)
{
    int total = 0;
    char buf[24];

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            ferry_putc(*fmt);
            total++;
            continue;
        }
        fmt++;
        int left = 0, width = 0, lng = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-') left = 1;
            else if (*fmt == '0') pad = '0';
            else break;
        }
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        if (left)
            pad = ' ';

        char conv = *fmt;
        if (conv == 0)
            break;
        switch (conv) {
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'p': {
            uint64_t v;
            int neg = 0;
            unsigned base = (conv == 'x' || conv == 'X' || conv == 'p') ? 16 : 10;
            if (conv == 'p') {
                v = (uint64_t)(uintptr_t)va_arg(ap, void *);
            } else if (conv == 'd' || conv == 'i') {
                int64_t sv = lng ? va_arg(ap, long) : va_arg(ap, int);
                if (sv < 0) { neg = 1; v = -(uint64_t)sv; } else v = (uint64_t)sv;
            } else {
                v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            }
            const char *digits = conv == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            char *p = buf + sizeof(buf);
            do {
                *--p = digits[v % base];
                v /= base;
            } while (v);
            if (conv == 'p') { *--p = 'x'; *--p = '0'; }
            if (neg) *--p = '-';
            total += put_field(p, (int)(buf + sizeof(buf) - p), width, left, pad);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            total += put_field(s, (int)strlen(s), width, left, ' ');
            break;
        }
        case 'c':
            buf[0] = (char)va_arg(ap, int);
            total += put_field(buf, 1, width, left, ' ');
            break;
        case '%':
            ferry_putc('%');
            total++;
            break;
        default: /* unknown: print verbatim */
            ferry_putc('%');
            ferry_putc(conv);
            total += 2;
            break;
        }
    }
    return total;
}

int ferry_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = ferry_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

void ferry_print_config(const char *name)
{
    uint32_t n = ferry_config.count;
    if (n > FERRY_CFG_MAX_ENTRIES)
        n = FERRY_CFG_MAX_ENTRIES;
    ferry_puts(name);
    ferry_putc(':');
    for (uint32_t i = 0; i < n; i++) {
        ferry_putc(' ');
        for (unsigned j = 0; j < FERRY_CFG_NAME_LEN; j++) {
            char c = ferry_config.entry[i].name[j];
            if (!c)
                break;
            ferry_putc(c);
        }
        ferry_printf("=%lu", (unsigned long)ferry_config.entry[i].value);
    }
    ferry_putc('\n');
}

/* ------------------------------------------------------------------ exit */

void ferry_exit(int code)
{
    volatile uint32_t *test = (volatile uint32_t *)FERRY_TEST_BASE;
    *test = code == 0 ? 0x5555u : (((uint32_t)code << 16) | 0x3333u);
    for (;;) {
        csr_write(mie, 0);
        ferry_wfi();
    }
}

/* ----------------------------------------------------------------- timer */

volatile uint64_t ferry_timer_irqs;

void ferry_timer_enable(void)
{
    ferry_set_timer(~0ULL); /* QEMU resets mtimecmp to 0: disarm first */
    csr_set(mie, MIE_MTIE);
    csr_set(mstatus, MSTATUS_MIE);
}

void ferry_sleep_until(uint64_t t)
{
    ferry_set_timer(t);
    for (;;) {
        /* Check-then-WFI with interrupts masked, so an interrupt arriving
         * between the check and the WFI cannot be lost: WFI still wakes on a
         * pending+enabled (mie) interrupt, which is then taken at csrs. */
        csr_clear(mstatus, MSTATUS_MIE);
        if (ferry_mtime() >= t) {
            csr_set(mstatus, MSTATUS_MIE);
            break;
        }
        ferry_wfi();
        csr_set(mstatus, MSTATUS_MIE);
    }
    /* If the interrupt was not taken (e.g. MTIE off), do not leave it armed. */
    ferry_set_timer(~0ULL);
}

/* ------------------------------------------------------------------ traps */

uint64_t ferry_trap(uint64_t mcause, uint64_t mepc, uint64_t mtval,
                    struct ferry_trap_frame *tf)
{
    if ((mcause & MCAUSE_INTR) && (mcause & ~MCAUSE_INTR) == IRQ_M_TIMER) {
        ferry_set_timer(~0ULL); /* disarm; the sleeper re-arms */
        ferry_timer_irqs++;
        return mepc;
    }
    ferry_printf("TRAP mcause=0x%lx mepc=0x%lx mtval=0x%lx ra=0x%lx sp=0x%lx\n",
                 (unsigned long)mcause, (unsigned long)mepc, (unsigned long)mtval,
                 (unsigned long)tf->x[1], (unsigned long)tf->x[2]);
    ferry_exit(3);
}

/* ----------------------------------------------------------------- libc */

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;
    uint64_t v = (uint8_t)c;
    v |= v << 8; v |= v << 16; v |= v << 32;
    while (n && ((uintptr_t)p & 7)) { *p++ = (uint8_t)c; n--; }
    for (; n >= 8; n -= 8, p += 8)
        *(uint64_t *)p = v;
    while (n--) *p++ = (uint8_t)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if ((((uintptr_t)dp | (uintptr_t)sp) & 7) == 0) {
        for (; n >= 8; n -= 8, dp += 8, sp += 8)
            *(uint64_t *)dp = *(const uint64_t *)sp;
    }
    while (n--) *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--) dp[n] = sp[n];
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
