@ Microbenchmarks for edgecomp's cycle model (tests/test_cycles.py, docs/cycles.md).
@
@ Each bench_* function is a loop whose cycle count the Technical Reference Manuals give exactly:
@ the test traces this program under QEMU and checks that the model prices every function at the
@ count worked out by hand from the TRM tables (the formulas are in the test, per core).
@ Built with: arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -nostdlib -T microbench.ld microbench.S
@ Runs on QEMU's mps2-an386 and exits through semihosting. ec_timer_now is an empty function
@ whose entries cut the trace into segments, as the probe's calls do in a bundle.
@ Registers follow no calling convention: reset calls the benchmarks in order, nothing else runs.

        .syntax unified
        .thumb

        .section .vectors, "a"
        .word   _stack_top
        .word   reset

        .text
        .thumb_func
        .global reset
reset:
        ldr     r1, =buf
        str     r1, [r1]                @ buf[0] = &buf (for the dependent load)
        movs    r0, #0
        movs    r4, #1
        movs    r5, #2
        bl      ec_timer_now
        bl      bench_ldr
        bl      ec_timer_now
        bl      bench_ldr_pipelined
        bl      ec_timer_now
        bl      bench_ldr_dependent
        bl      ec_timer_now
        bl      bench_address_stall
        bl      ec_timer_now
        bl      bench_ldm4
        bl      ec_timer_now
        bl      bench_ldm8
        bl      ec_timer_now
        bl      bench_ldrd
        bl      ec_timer_now
        bl      bench_smlad
        bl      ec_timer_now
        bl      bench_branches
        bl      ec_timer_now
        bl      bench_stores
        bl      ec_timer_now
        movs    r0, #0x18               @ SYS_EXIT
        ldr     r1, =0x20026            @ ADP_Stopped_ApplicationExit
        bkpt    0xab
        b       .
        .size   reset, . - reset

        .thumb_func
        .global ec_timer_now
ec_timer_now:
        bx      lr
        .size   ec_timer_now, . - ec_timer_now

@ 100 single loads, each followed by an ALU instruction (nothing to pipeline with).
        .thumb_func
bench_ldr:
        movs    r3, #100
1:      ldr     r0, [r1]
        adds    r2, r2, #1
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_ldr, . - bench_ldr

@ 4 independent loads back to back: the 2nd to 4th pipeline after the one before.
        .thumb_func
bench_ldr_pipelined:
        movs    r3, #100
1:      ldr     r0, [r1]
        ldr     r2, [r1, #4]
        ldr     r4, [r1, #8]
        ldr     r5, [r1, #12]
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_ldr_pipelined, . - bench_ldr_pipelined

@ A load whose address is the previous load's result: no pipelining.
        .thumb_func
bench_ldr_dependent:
        movs    r3, #100
1:      ldr     r0, [r1]
        ldr     r2, [r0]
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_ldr_dependent, . - bench_ldr_dependent

@ A load addressed by the register an ALU instruction wrote just before: one stall cycle.
        .thumb_func
bench_address_stall:
        movs    r3, #100
1:      adds    r0, r1, #4
        ldr     r2, [r0]
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_address_stall, . - bench_address_stall

@ LDM of 4 and of 8 registers: 1 + N.
        .thumb_func
bench_ldm4:
        movs    r3, #100
1:      ldm     r1, {r4, r5, r6, r7}
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_ldm4, . - bench_ldm4

        .thumb_func
bench_ldm8:
        movs    r3, #100
1:      ldm.w   r1, {r4, r5, r6, r7, r8, r9, r10, r11}
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_ldm8, . - bench_ldm8

@ LDRD: 1 + 2, not pipelined.
        .thumb_func
bench_ldrd:
        movs    r3, #100
1:      ldrd    r4, r5, [r1]
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_ldrd, . - bench_ldrd

@ 4 dependent SMLADs (one accumulator): 1 each.
        .thumb_func
bench_smlad:
        movs    r3, #100
1:      smlad   r0, r4, r5, r0
        smlad   r0, r4, r5, r0
        smlad   r0, r4, r5, r0
        smlad   r0, r4, r5, r0
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_smlad, . - bench_smlad

@ Two unconditional taken branches per iteration, besides the loop's own.
        .thumb_func
bench_branches:
        movs    r3, #100
1:      b       2f
2:      b       3f
3:      subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_branches, . - bench_branches

@ Stores: immediate offset (1), register offset (2), and each after a load (pipelined: 1).
        .thumb_func
bench_stores:
        movs    r3, #100
        movs    r2, #8
1:      str     r0, [r1, #4]
        adds    r4, r4, #1
        str     r0, [r1, r2]
        adds    r4, r4, #1
        ldr     r0, [r1, #4]
        str     r0, [r1, #8]
        ldr     r5, [r1, #4]
        str     r5, [r1, r2]
        subs    r3, r3, #1
        bne     1b
        bx      lr
        .size   bench_stores, . - bench_stores

        .ltorg

        .bss
        .align  3
buf:    .space  64
