// Entering and leaving the deprivileged EL0 service (el0.rs).

.section .text.el0, "ax"

// el0_call(x0-x3 = arguments, x4 = the service function (EL0 VA),
//          x5 = EL0 entry (EL0 VA of el0_service_start), x6 = EL0 stack top,
//          x7 = save area (this CPU's PRDA)) -> (x0 = exit kind, x1 = value)
// Saves the callee-saved registers and SP, then drops to EL0. It "returns"
// when the exception handler calls el0_return for the service's exit.
.global el0_call
el0_call:
    // No interrupt between here and the eret: an exception taken at EL2
    // would overwrite ELR_EL2 and SPSR_EL2 once they hold EL0's entry (a
    // PNMI can arrive, since traps run with PSTATE.I clear). The eret
    // gives EL0 its own PSTATE; the exit back here masks again.
    msr     daifset, #2
    stp     x19, x20, [x7, #0]
    stp     x21, x22, [x7, #16]
    stp     x23, x24, [x7, #32]
    stp     x25, x26, [x7, #48]
    stp     x27, x28, [x7, #64]
    stp     x29, x30, [x7, #80]
    mov     x9, sp
    str     x9, [x7, #96]
    msr     elr_el2, x5
    mov     x9, #{SPSR_EL0_MASKED}
    msr     spsr_el2, x9
    msr     sp_el0, x6
    // Nothing of EL2's leaks into EL0's registers.
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    mov     x15, xzr
    mov     x16, xzr
    mov     x17, xzr
    mov     x18, xzr
    mov     x19, xzr
    mov     x20, xzr
    mov     x21, xzr
    mov     x22, xzr
    mov     x23, xzr
    mov     x24, xzr
    mov     x25, xzr
    mov     x26, xzr
    mov     x27, xzr
    mov     x28, xzr
    mov     x29, xzr
    mov     x30, xzr
    eret

// el0_return(x0 = exit kind, x1 = value, x2 = save area): abandons the
// exception handler's frames and returns from el0_call.
.global el0_return
el0_return:
    ldp     x19, x20, [x2, #0]
    ldp     x21, x22, [x2, #16]
    ldp     x23, x24, [x2, #32]
    ldp     x25, x26, [x2, #48]
    ldp     x27, x28, [x2, #64]
    ldp     x29, x30, [x2, #80]
    ldr     x9, [x2, #96]
    mov     sp, x9
    ret

// Runs at EL0: call the service, hand its result to EL2 with SVC.
.global el0_service_start
el0_service_start:
    blr     x4
    svc     #0
    b       .

// Split scheme only: EL0 runs in the EL1&0 regime, so its exceptions go to
// EL1. VBAR_EL1 points here (at the EL0 range's alias of this code) while
// the service runs; every vector hands the exception to EL2.
.balign 2048
.global el0_bounce_vectors
el0_bounce_vectors:
.rept 16
.balign 128
    hvc     #{EL0_BOUNCE_IMM}
    b       .
.endr
