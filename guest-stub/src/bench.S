// The benchmark's EL1 vector tables (bench.rs): the IRQ vector's first
// instruction reads the cycle counter, which is what "latency to the guest
// handler" means. The interrupted code is bench.rs's wait loop, which
// leaves x9..x11 to this vector; every other vector is the stub's own.
// One table per GIC: bench_vectors (GICv3) acknowledges and ends through
// the system registers, bench_vectors_v2 (GICv2) through the memory-mapped
// CPU interface, whose address the wait loop hands over in x11.
//
// IRQ, current EL with SP_ELx (offset 0x280):
//   x9  <- PMCCNTR_EL0 at entry
//   x10 <- the acknowledge register's value (ends the wait loop)
// then: the virtual timer is disabled (it is level-triggered and would
// fire again), the interrupt ended (EOImode 0: drop and deactivate; a
// GICv2's EOIR gets the whole IAR value, an SGI's source included), and
// IRQs stay masked on return so that nothing else lands in the loop.

.macro bench_table name, gicv2
.balign 2048
.global \name
\name:
.set bench_vector_offset, 0
.rept 16
.balign 128
.if bench_vector_offset == 0x280
    mrs     x9, pmccntr_el0
.if \gicv2
    ldr     w10, [x11, #{GICC_IAR}]
    msr     cntv_ctl_el0, xzr
    str     w10, [x11, #{GICC_EOIR}]
.else
    mrs     x10, icc_iar1_el1
    msr     cntv_ctl_el0, xzr
    msr     icc_eoir1_el1, x10
.endif
    mrs     x11, spsr_el1
    orr     x11, x11, #{PSR_I}
    msr     spsr_el1, x11
    isb
    eret
.else
    b       stub_vectors + bench_vector_offset
.endif
.set bench_vector_offset, bench_vector_offset + 128
.endr
.endm

.section .text.vectors, "ax"
bench_table bench_vectors, 0
bench_table bench_vectors_v2, 1
