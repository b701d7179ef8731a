/* Ferry guest entry: M-mode, no firmware.  a0 = hart id on entry. */
    .file "start.S"

#define STACK_SIZE (32 * 1024)
#define FRAME      (32 * 8)

    .section .text.start, "ax"
    .globl _start
    .type _start, @function
_start:
    csrw    mie, zero
    csrw    mstatus, zero
.option push
.option norelax
    la      gp, __global_pointer$
.option pop
    csrr    t0, mhartid
    bnez    t0, park                /* only hart 0 runs the guest */

    la      sp, __stack_top
    mv      s0, a0                  /* hart id (from a0, as the board passes it) */

    /* clear .bss (8-byte aligned by the linker script) */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:
    la      t0, ferry_trap_entry
    csrw    mtvec, t0               /* direct mode */

    mv      a0, s0
    call    main
    call    ferry_exit              /* exit(main's return value) */

park:
    csrw    mie, zero
3:  wfi
    j       3b
    .size _start, . - _start

/* Trap entry: save all GPRs on the current stack, call
 *   uint64_t ferry_trap(mcause, mepc, mtval, frame)
 * and resume at the returned mepc. */
    .text
    .balign 4
    .globl ferry_trap_entry
    .type ferry_trap_entry, @function
ferry_trap_entry:
    addi    sp, sp, -FRAME
    .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd      x\n, \n*8(sp)
    .endr
    addi    t0, sp, FRAME
    sd      t0, 2*8(sp)             /* sp at the time of the trap */
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    mv      a3, sp
    call    ferry_trap
    csrw    mepc, a0
    .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      x\n, \n*8(sp)
    .endr
    addi    sp, sp, FRAME
    mret
    .size ferry_trap_entry, . - ferry_trap_entry

    .section .bss.stack, "aw", @nobits
    .balign 16
    .globl __stack_bottom, __stack_top
__stack_bottom:
    .space  STACK_SIZE
__stack_top:
