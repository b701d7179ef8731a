/*
 * env.h - bare-metal test environment for the Ferry ISA self-tests.
 *
 * Usage (in a .S file):
 *
 *     #define TEST_NAME "rv64ui-alu"
 *     #include "env.h"
 *         TEST_RR(1, add, 3, 1, 2)
 *         ...
 *     TEST_END
 *
 * Including this file emits the runtime (_start, the M- and S-mode trap
 * handlers, UART printing, pass/fail reporting) and then switches to .text
 * at label test_main, where the test body starts (in M-mode).
 *
 * Board: QEMU virt (RAM at 0x80000000, ns16550a UART at 0x10000000,
 * CLINT at 0x02000000, sifive_test at 0x00100000).
 *
 * Conventions
 *   gp (x3)  current test case number (TESTNUM).  Never use it in tests.
 *   t6 (x31) holds the expected value inside TEST_CASE checks.
 *   sp       points at a small stack (_stack_top).  The handlers swap sp with
 *            mscratch/sscratch (which point at private save areas) and
 *            restore it, so tests must leave mscratch/sscratch intact.
 *   Handlers preserve all registers.  Macros may clobber t4, t5, t6.
 *   Local label 7777 is reserved for the macros.
 *
 * Reporting: "PASS <name>\n" then sifive_test <- 0x5555 (exit 0), or
 * "FAIL <name> case <n>\n" then sifive_test <- (n<<16)|0x3333 (exit n).
 * n is forced into 1..255 (0 or >255 report 255).
 *
 * Traps: both handlers record the trap in `trap_info` (see TI_* offsets).
 * An exception is "expected" only if trap_info.resume is non-zero (set it
 * with EXPECT_TRAP(label) / EXPECT_TRAP_PRIV(label, priv)); the handler then
 * resumes at that label (optionally in another privilege mode) and clears
 * the resume slot.  An unexpected exception prints the trap CSRs and fails
 * the current case.  Interrupts are recorded, their source is cleared
 * (M: MSIP<-0, mtimecmp<-~0, mip.SSIP/STIP/SEIP cleared; S: sip.SSIP
 * cleared, sie bit for the cause cleared) and execution returns to xepc.
 */
#ifndef FERRY_ISA_ENV_H
#define FERRY_ISA_ENV_H

#define UART_BASE       0x10000000
#define TEST_DEV        0x00100000
#define CLINT_BASE      0x02000000
#define CLINT_MSIP      0x02000000
#define CLINT_MTIMECMP  0x02004000
#define CLINT_MTIME     0x0200BFF8

#define TESTNUM gp

#define MSTATUS_SIE   0x00000002
#define MSTATUS_MIE   0x00000008
#define MSTATUS_SPIE  0x00000020
#define MSTATUS_MPIE  0x00000080
#define MSTATUS_SPP   0x00000100
#define MSTATUS_MPP   0x00001800
#define MSTATUS_MPP_S 0x00000800
#define MSTATUS_MPRV  0x00020000
#define MSTATUS_SUM   0x00040000
#define MSTATUS_MXR   0x00080000

#define MIP_SSIP 0x002
#define MIP_MSIP 0x008
#define MIP_STIP 0x020
#define MIP_MTIP 0x080
#define MIP_SEIP 0x200
#define MIP_MEIP 0x800

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS     1
#define CAUSE_ILLEGAL_INSN     2
#define CAUSE_BREAKPOINT       3
#define CAUSE_MISALIGNED_LOAD  4
#define CAUSE_LOAD_ACCESS      5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS     7
#define CAUSE_USER_ECALL       8
#define CAUSE_SUPERVISOR_ECALL 9
#define CAUSE_MACHINE_ECALL    11
#define CAUSE_FETCH_PAGE_FAULT 12
#define CAUSE_LOAD_PAGE_FAULT  13
#define CAUSE_STORE_PAGE_FAULT 15
#define INT_BIT 0x8000000000000000

/* trap_info layout */
#define TI_CAUSE   0
#define TI_EPC     8
#define TI_TVAL    16
#define TI_STATUS  24   /* mstatus (M handler) or sstatus (S handler) at entry */
#define TI_MODE    32   /* 3 = taken in M handler, 1 = taken in S handler */
#define TI_COUNT   40   /* number of traps taken so far */
#define TI_RESUME  48   /* resume address for an expected exception (0 = none) */
#define TI_RPRIV   56   /* 0 = return to trapping mode, else privilege+1 */
#define TI_LOG     64   /* 16 dwords: cause of trap number k stored at TI_LOG + 8*(k & 15) */

/* ------------------------------------------------------------------ */
/* Check / case macros                                                 */
/* ------------------------------------------------------------------ */

#define FAIL_IF_NE(reg, val)  li t6, val; beq reg, t6, 7777f; j fail; 7777:
#define FAIL_IF_NE2(r1, r2)   beq r1, r2, 7777f; j fail; 7777:

#define TEST_CASE(n, testreg, correctval, code...) \
test_##n: li TESTNUM, n; code; li t6, correctval; beq testreg, t6, 7777f; j fail; 7777:

/* reg-reg op */
#define TEST_RR(n, inst, result, v1, v2) \
    TEST_CASE(n, a0, result, li a1, v1; li a2, v2; inst a0, a1, a2)
/* rd == rs1 */
#define TEST_RR_D1(n, inst, result, v1, v2) \
    TEST_CASE(n, a1, result, li a1, v1; li a2, v2; inst a1, a1, a2)
/* rd == rs2 */
#define TEST_RR_D2(n, inst, result, v1, v2) \
    TEST_CASE(n, a2, result, li a1, v1; li a2, v2; inst a2, a1, a2)
/* rd == rs1 == rs2 */
#define TEST_RR_DD(n, inst, result, v1) \
    TEST_CASE(n, a1, result, li a1, v1; inst a1, a1, a1)
/* reg-imm op */
#define TEST_RI(n, inst, result, v1, imm) \
    TEST_CASE(n, a0, result, li a1, v1; inst a0, a1, imm)
#define TEST_RI_D1(n, inst, result, v1, imm) \
    TEST_CASE(n, a1, result, li a1, v1; inst a1, a1, imm)

/* Load `reg` with trap_info field */
#define LOAD_TI(reg, field) la reg, trap_info; ld reg, field(reg)
/* Check trap_info field against value (clobbers t5, t6) */
#define CHECK_TI(field, val) LOAD_TI(t5, field); FAIL_IF_NE(t5, val)

/* Arm the handlers: the next exception resumes at `label` in the
 * trapping privilege mode (clobbers t5, t6). */
#define EXPECT_TRAP(label) la t5, label; la t6, trap_info; sd t5, TI_RESUME(t6); sd zero, TI_RPRIV(t6)
/* ... resume at `label` in privilege `priv` (PRV_U/PRV_S/PRV_M). */
#define EXPECT_TRAP_PRIV(label, priv) la t5, label; la t6, trap_info; sd t5, TI_RESUME(t6); \
    li t5, (priv)+1; sd t5, TI_RPRIV(t6)
#define DISARM_TRAP la t6, trap_info; sd zero, TI_RESUME(t6); sd zero, TI_RPRIV(t6)
/* Check the cause of the k-th trap since TI_COUNT was last zeroed */
#define CHECK_LOG(k, val) la t5, trap_info; ld t5, TI_LOG + 8*((k) & 15)(t5); FAIL_IF_NE(t5, val)
#define RESET_COUNT la t6, trap_info; sd zero, TI_COUNT(t6)
/* Clear recorded cause/epc/tval (set them to -1) */
#define CLEAR_TI la t6, trap_info; li t5, -1; sd t5, TI_CAUSE(t6); sd t5, TI_EPC(t6); \
    sd t5, TI_TVAL(t6); sd t5, TI_STATUS(t6); sd t5, TI_MODE(t6)

/* From S or U (or M) mode, trap into the M handler and continue at
 * `label` in M-mode.  Only valid when ecalls from the current mode are
 * not delegated to S.  Clobbers t5, t6, trap_info. */
#define GOTO_M(label) EXPECT_TRAP_PRIV(label, PRV_M); ecall

/* From M-mode, continue at `label` in privilege `priv`.  MPIE is cleared,
 * so mstatus.MIE = 0 afterwards.  Clobbers t5. */
#define MRET_TO(label, priv) \
    li t5, MSTATUS_MPP | MSTATUS_MPIE; csrc mstatus, t5; \
    li t5, ((priv) << 11); csrs mstatus, t5; \
    la t5, label; csrw mepc, t5; mret

/* From S-mode, continue at `label` in U (priv=0) or S (priv=1). */
#define SRET_TO(label, priv) \
    li t5, MSTATUS_SPP | MSTATUS_SPIE; csrc sstatus, t5; \
    li t5, ((priv) << 8); csrs sstatus, t5; \
    la t5, label; csrw sepc, t5; sret

/* Open PMP for S/U: pmpaddr0 = all ones, pmpcfg0 = NAPOT|RWX */
#define PMP_OPEN_ALL li t5, -1; csrw pmpaddr0, t5; li t5, 0x1f; csrw pmpcfg0, t5

#define TEST_END j pass

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

#ifndef TEST_NAME
#error "define TEST_NAME before including env.h"
#endif

    .section .text.init, "ax"
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, park
    /* zero integer registers */
    li x1, 0
    li x3, 0
    li x4, 0
    li x5, 0
    li x6, 0
    li x7, 0
    li x8, 0
    li x9, 0
    li x10, 0
    li x11, 0
    li x12, 0
    li x13, 0
    li x14, 0
    li x15, 0
    li x16, 0
    li x17, 0
    li x18, 0
    li x19, 0
    li x20, 0
    li x21, 0
    li x22, 0
    li x23, 0
    li x24, 0
    li x25, 0
    li x26, 0
    li x27, 0
    li x28, 0
    li x29, 0
    li x30, 0
    li x31, 0
    la sp, _stack_top
    la t0, m_trap_vector
    csrw mtvec, t0
    la t0, m_trap_frame
    csrw mscratch, t0
    csrw mie, zero
    li t0, MSTATUS_MIE | MSTATUS_SIE | MSTATUS_MPRV
    csrc mstatus, t0
    li TESTNUM, 0
    j test_main
park:
    wfi
    j park

/* ---------------- M-mode trap handler ---------------- */
    .align 2
    .globl m_trap_vector
m_trap_vector:
    csrrw sp, mscratch, sp
    sd t0, 0(sp)
    sd t1, 8(sp)
    sd t2, 16(sp)
    la t0, trap_info
    csrr t1, mcause
    sd t1, TI_CAUSE(t0)
    csrr t1, mepc
    sd t1, TI_EPC(t0)
    csrr t1, mtval
    sd t1, TI_TVAL(t0)
    csrr t1, mstatus
    sd t1, TI_STATUS(t0)
    li t1, 3
    sd t1, TI_MODE(t0)
    ld t1, TI_COUNT(t0)
    addi t1, t1, 1
    sd t1, TI_COUNT(t0)
    andi t1, t1, 15
    slli t1, t1, 3
    add t1, t1, t0
    csrr t2, mcause
    sd t2, TI_LOG(t1)
    csrr t1, mcause
    bltz t1, m_interrupt
    ld t1, TI_RESUME(t0)
    beqz t1, unexpected_trap_m
    csrw mepc, t1
    sd zero, TI_RESUME(t0)
    ld t1, TI_RPRIV(t0)
    sd zero, TI_RPRIV(t0)
    beqz t1, m_trap_return
    addi t1, t1, -1
    slli t1, t1, 11
    li t2, MSTATUS_MPP
    csrc mstatus, t2
    csrs mstatus, t1
m_trap_return:
    ld t0, 0(sp)
    ld t1, 8(sp)
    ld t2, 16(sp)
    csrrw sp, mscratch, sp
    mret
m_interrupt:
    slli t1, t1, 1
    srli t1, t1, 1
    li t2, 7
    beq t1, t2, m_int_mti
    li t2, 3
    beq t1, t2, m_int_msi
    li t2, 1
    beq t1, t2, m_int_ssi
    li t2, 5
    beq t1, t2, m_int_sti
    li t2, 9
    beq t1, t2, m_int_sei
    j unexpected_trap_m
m_int_mti:
    li t2, CLINT_MTIMECMP
    li t1, -1
    sd t1, 0(t2)
    j m_trap_return
m_int_msi:
    li t2, CLINT_MSIP
    sw zero, 0(t2)
    j m_trap_return
m_int_ssi:
    li t2, MIP_SSIP
    csrc mip, t2
    j m_trap_return
m_int_sti:
    li t2, MIP_STIP
    csrc mip, t2
    j m_trap_return
m_int_sei:
    li t2, MIP_SEIP
    csrc mip, t2
    j m_trap_return

unexpected_trap_m:
    la a0, str_trap_m
    jal ra, rt_puts
    csrr a0, mcause
    jal ra, rt_puthex
    la a0, str_epc
    jal ra, rt_puts
    csrr a0, mepc
    jal ra, rt_puthex
    la a0, str_tval
    jal ra, rt_puts
    csrr a0, mtval
    jal ra, rt_puthex
    li a0, '\n'
    jal ra, rt_putc
    j fail

/* ---------------- S-mode trap handler ---------------- */
    .align 2
    .globl s_trap_vector
s_trap_vector:
    csrrw sp, sscratch, sp
    sd t0, 0(sp)
    sd t1, 8(sp)
    sd t2, 16(sp)
    la t0, trap_info
    csrr t1, scause
    sd t1, TI_CAUSE(t0)
    csrr t1, sepc
    sd t1, TI_EPC(t0)
    csrr t1, stval
    sd t1, TI_TVAL(t0)
    csrr t1, sstatus
    sd t1, TI_STATUS(t0)
    li t1, 1
    sd t1, TI_MODE(t0)
    ld t1, TI_COUNT(t0)
    addi t1, t1, 1
    sd t1, TI_COUNT(t0)
    andi t1, t1, 15
    slli t1, t1, 3
    add t1, t1, t0
    csrr t2, scause
    sd t2, TI_LOG(t1)
    csrr t1, scause
    bltz t1, s_interrupt
    ld t1, TI_RESUME(t0)
    beqz t1, unexpected_trap_s
    csrw sepc, t1
    sd zero, TI_RESUME(t0)
    ld t1, TI_RPRIV(t0)
    sd zero, TI_RPRIV(t0)
    beqz t1, s_trap_return
    addi t1, t1, -1
    slli t1, t1, 8
    li t2, MSTATUS_SPP
    csrc sstatus, t2
    csrs sstatus, t1
s_trap_return:
    ld t0, 0(sp)
    ld t1, 8(sp)
    ld t2, 16(sp)
    csrrw sp, sscratch, sp
    sret
s_interrupt:
    slli t1, t1, 1
    srli t1, t1, 1
    li t2, 1
    sll t2, t2, t1
    csrc sie, t2
    li t2, MIP_SSIP
    csrc sip, t2
    j s_trap_return

unexpected_trap_s:
    la a0, str_trap_s
    jal ra, rt_puts
    csrr a0, scause
    jal ra, rt_puthex
    la a0, str_epc
    jal ra, rt_puts
    csrr a0, sepc
    jal ra, rt_puthex
    la a0, str_tval
    jal ra, rt_puts
    csrr a0, stval
    jal ra, rt_puthex
    li a0, '\n'
    jal ra, rt_putc
    j fail

/* ---------------- UART output (no stack; clobbers a0-a5, t0-t2) ------- */
rt_putc:
    li t0, UART_BASE
1:  lbu t1, 5(t0)
    andi t1, t1, 0x20
    beqz t1, 1b
    sb a0, 0(t0)
    ret

rt_puts:                    /* a0 = NUL-terminated string */
    mv a5, a0
    li t0, UART_BASE
1:  lbu a0, 0(a5)
    beqz a0, 3f
2:  lbu t1, 5(t0)
    andi t1, t1, 0x20
    beqz t1, 2b
    sb a0, 0(t0)
    addi a5, a5, 1
    j 1b
3:  ret

rt_puthex:                  /* a0 = value, printed as 0x%016x */
    mv a5, a0
    li t0, UART_BASE
    li a4, 60
    li a0, '0'
1:  lbu t1, 5(t0)
    andi t1, t1, 0x20
    beqz t1, 1b
    sb a0, 0(t0)
    li a0, 'x'
1:  lbu t1, 5(t0)
    andi t1, t1, 0x20
    beqz t1, 1b
    sb a0, 0(t0)
2:  srl a0, a5, a4
    andi a0, a0, 15
    li t2, 10
    blt a0, t2, 3f
    addi a0, a0, 'a' - 10 - '0'
3:  addi a0, a0, '0'
1:  lbu t1, 5(t0)
    andi t1, t1, 0x20
    beqz t1, 1b
    sb a0, 0(t0)
    addi a4, a4, -4
    bgez a4, 2b
    ret

rt_putdec:                  /* a0 = value 0..999 (no M extension needed) */
    mv a5, a0
    li a4, 0                /* printed-a-digit flag */
    li a3, 100
1:  li a0, 0
2:  bltu a5, a3, 3f
    sub a5, a5, a3
    addi a0, a0, 1
    j 2b
3:  bnez a0, 4f
    bnez a4, 4f
    li t2, 1
    bne a3, t2, 6f          /* suppress leading zeros, but print the last digit */
4:  li a4, 1
    addi a0, a0, '0'
    li t0, UART_BASE
5:  lbu t1, 5(t0)
    andi t1, t1, 0x20
    beqz t1, 5b
    sb a0, 0(t0)
6:  li t2, 100
    li a0, 10
    beq a3, t2, 7f
    li t2, 10
    li a0, 1
    beq a3, t2, 7f
    ret
7:  mv a3, a0
    j 1b

/* ---------------- pass / fail ---------------- */
    .globl pass
pass:
    la a0, str_pass
    jal ra, rt_puts
    la a0, str_name
    jal ra, rt_puts
    li a0, '\n'
    jal ra, rt_putc
    li t0, TEST_DEV
    li t1, 0x5555
    sw t1, 0(t0)
1:  j 1b

    .globl fail
fail:
    mv s11, TESTNUM
    la a0, str_fail
    jal ra, rt_puts
    la a0, str_name
    jal ra, rt_puts
    la a0, str_case
    jal ra, rt_puts
    mv a0, s11
    li t2, 999
    bleu a0, t2, 1f
    li a0, 999
1:  jal ra, rt_putdec
    li a0, '\n'
    jal ra, rt_putc
    mv t1, s11
    beqz t1, 2f
    li t2, 255
    bleu t1, t2, 3f
2:  li t1, 255
3:  slli t1, t1, 16
    li t2, 0x3333
    or t1, t1, t2
    li t0, TEST_DEV
    sw t1, 0(t0)
1:  j 1b

    .section .rodata.env, "a"
str_name:   .asciz TEST_NAME
str_pass:   .asciz "PASS "
str_fail:   .asciz "FAIL "
str_case:   .asciz " case "
str_trap_m: .asciz "unexpected M-trap mcause="
str_trap_s: .asciz "unexpected S-trap scause="
str_epc:    .asciz " epc="
str_tval:   .asciz " tval="

    .section .data.env, "aw"
    .align 6
    .globl trap_info
trap_info:
    .dword -1, -1, -1, -1, -1, 0, 0, 0
    .fill 16, 8, -1
    .align 6
    .globl m_trap_frame
m_trap_frame:
    .skip 64
    .globl s_trap_frame
s_trap_frame:
    .skip 64

    .section .bss.stack, "aw", @nobits
    .align 12
_stack_bottom:
    .skip 4096
    .globl _stack_top
_stack_top:

    .text
    .globl test_main
test_main:

#endif
