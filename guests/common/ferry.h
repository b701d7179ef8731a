/* Ferry guest runtime: freestanding helpers for the QEMU virt board (M-mode). */
#ifndef FERRY_H
#define FERRY_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include "config.h"

/* ---- board ---- */
#define FERRY_RAM_BASE      0x80000000UL
#define FERRY_UART_BASE     0x10000000UL   /* ns16550a */
#define FERRY_CLINT_BASE    0x02000000UL
#define FERRY_CLINT_MSIP     (FERRY_CLINT_BASE + 0x0000)
#define FERRY_CLINT_MTIMECMP (FERRY_CLINT_BASE + 0x4000)
#define FERRY_CLINT_MTIME    (FERRY_CLINT_BASE + 0xBFF8)
#define FERRY_TEST_BASE     0x00100000UL   /* sifive_test finisher */

#define FERRY_TIMEBASE_HZ   10000000ULL
#define FERRY_TICKS_PER_MS  (FERRY_TIMEBASE_HZ / 1000)
#define FERRY_PAGE_SIZE     4096UL
#define FERRY_MIB           (1024UL * 1024UL)

/* First page-aligned address after the image (work regions start here). */
extern char _end[];
static inline uintptr_t ferry_region_base(void) { return (uintptr_t)_end; }

/* ---- CSR helpers ---- */
#define csr_read(csr) ({ uint64_t v_; __asm__ volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" :: "rK"((uint64_t)(v)) : "memory")
#define csr_set(csr, v)   __asm__ volatile("csrs " #csr ", %0" :: "rK"((uint64_t)(v)) : "memory")
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" :: "rK"((uint64_t)(v)) : "memory")

#define MSTATUS_MIE  (1UL << 3)
#define MIE_MTIE     (1UL << 7)
#define MCAUSE_INTR  (1UL << 63)
#define IRQ_M_TIMER  7

/* ---- console ---- */
void ferry_putc(char c);
void ferry_puts(const char *s);              /* no newline added */
int  ferry_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  ferry_vprintf(const char *fmt, va_list ap);
/* Print "NAME: key=value key=value ...\n" from the config block. */
void ferry_print_config(const char *name);

/* ---- exit (sifive_test finisher): 0 -> 0x5555, else (code << 16) | 0x3333 ---- */
void ferry_exit(int code) __attribute__((noreturn));

/* ---- time / timer ---- */
static inline uint64_t ferry_mtime(void)
{
    return *(volatile uint64_t *)FERRY_CLINT_MTIME;
}
static inline void ferry_set_timer(uint64_t when)
{
    *(volatile uint64_t *)FERRY_CLINT_MTIMECMP = when;
}
static inline void ferry_wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

/* Disarm the timer (mtimecmp = ~0), set mie.MTIE and mstatus.MIE. */
void ferry_timer_enable(void);
/* Arm mtimecmp = t and sleep with WFI until mtime >= t; the timer interrupt
 * is taken (and disarms the timer) before this returns.
 * Requires ferry_timer_enable() first. */
void ferry_sleep_until(uint64_t t);
/* Number of machine timer interrupts taken so far. */
extern volatile uint64_t ferry_timer_irqs;

/* ---- PRNG / hashing ---- */
static inline uint64_t ferry_xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}
/* splitmix64 finaliser: good 64-bit bijective mixer. */
static inline uint64_t ferry_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* Uniform-ish value in [0, n) from a 64-bit random value (high product). */
static inline uint64_t ferry_range(uint64_t r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

/* ---- libc bits ---- */
void  *memset(void *d, int c, size_t n);
void  *memcpy(void *d, const void *s, size_t n);
void  *memmove(void *d, const void *s, size_t n);
int    memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- trap handling (called from start.S) ---- */
struct ferry_trap_frame { uint64_t x[32]; }; /* x[0] unused, x[2] = sp at trap */
uint64_t ferry_trap(uint64_t mcause, uint64_t mepc, uint64_t mtval,
                    struct ferry_trap_frame *tf);

#endif
