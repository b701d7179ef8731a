/*
 * Ferry guest config block.
 *
 * Every guest has exactly one config block in the ELF section ".ferry_config"
 * (allocated, writable, 8-byte aligned).  Layout (little-endian):
 *
 *   offset 0   u64  magic   = 0x4746435952524546  ("FERRYCFG" in memory order)
 *   offset 8   u32  version = 1
 *   offset 12  u32  count   (<= 16)
 *   offset 16  count x { char name[16];  NUL-padded ASCII [a-z0-9_]
 *                        u64  value; }   -> 24 bytes per entry
 *
 * The Ferry loader rewrites the values in the ELF file by name before loading;
 * QEMU runs the defaults.  Guests read the block at run time through a volatile
 * object, so the compiler cannot constant-fold the defaults.
 *
 * Usage (one per guest, at file scope):
 *
 *   enum { CFG_SIZE_MIB, CFG_PASSES };          // index order == entry order
 *   FERRY_CONFIG(
 *       FERRY_KEY("size_mib", 32),
 *       FERRY_KEY("passes",   0));
 *   ...
 *   uint64_t size_mib = FERRY_CFG(CFG_SIZE_MIB);
 *
 * A guest without parameters uses FERRY_CONFIG_EMPTY();
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdint.h>

#define FERRY_CFG_MAGIC       0x4746435952524546ULL  /* "FERRYCFG" */
#define FERRY_CFG_VERSION     1u
#define FERRY_CFG_MAX_ENTRIES 16u
#define FERRY_CFG_NAME_LEN    16u

struct ferry_cfg_entry {
    char     name[FERRY_CFG_NAME_LEN];
    uint64_t value;
};

struct ferry_cfg_block {
    uint64_t magic;
    uint32_t version;
    uint32_t count;
    struct ferry_cfg_entry entry[]; /* count entries follow */
};

_Static_assert(sizeof(struct ferry_cfg_entry) == 24, "entry layout");
_Static_assert(sizeof(struct ferry_cfg_block) == 16, "header layout");

/* The block of the current guest (defined by FERRY_CONFIG in the guest). */
extern volatile struct ferry_cfg_block ferry_config;

#define FERRY_KEY(name, value) { name, (uint64_t)(value) }

#define FERRY_CFG_COUNT_(...) \
    (sizeof((struct ferry_cfg_entry[]){ __VA_ARGS__ }) / sizeof(struct ferry_cfg_entry))

#define FERRY_CONFIG(...)                                                      \
    _Static_assert(FERRY_CFG_COUNT_(__VA_ARGS__) <= FERRY_CFG_MAX_ENTRIES,     \
                   "too many config entries");                                 \
    __attribute__((section(".ferry_config"), used, aligned(8)))                \
    volatile struct ferry_cfg_block ferry_config = {                           \
        FERRY_CFG_MAGIC, FERRY_CFG_VERSION,                                    \
        (uint32_t)FERRY_CFG_COUNT_(__VA_ARGS__), { __VA_ARGS__ } }

#define FERRY_CONFIG_EMPTY()                                                   \
    __attribute__((section(".ferry_config"), used, aligned(8)))                \
    volatile struct ferry_cfg_block ferry_config = {                           \
        FERRY_CFG_MAGIC, FERRY_CFG_VERSION, 0 }

/* Read entry i's value at run time (volatile load from the patched block). */
#define FERRY_CFG(i) (ferry_config.entry[(i)].value)

#endif
