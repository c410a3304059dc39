// Running guest-stub code at EL0 (el0.rs): the stub's own EL1&0 regime with
// its MMU off, so EL0 sees the same flat addresses (IPAs) as EL1.

.section .text.stub_el0, "ax"

// stub_el0_enter(x0 = EL0 entry, x1 = EL0's x0, x2 = EL0's x1,
//                x3 = EL0 stack top, x4 = save area, x5 = SPSR for EL0,
//                x6 = bits to set in MDSCR_EL1 on the way, 0 for none)
// Saves EL1's callee-saved state (x19..x30, sp, DAIF, d8..d15) in the save
// area and drops to EL0 with the SPSR given (EL0t, DAIF masked, for
// AArch64 code; a step or AArch32 state for the debug checks). It "returns" when the exception handler calls
// stub_el0_return for EL0's exit.
.global stub_el0_enter
stub_el0_enter:
    stp     x19, x20, [x4, #0]
    stp     x21, x22, [x4, #16]
    stp     x23, x24, [x4, #32]
    stp     x25, x26, [x4, #48]
    stp     x27, x28, [x4, #64]
    stp     x29, x30, [x4, #80]
    mov     x9, sp
    mrs     x10, daif
    stp     x9, x10, [x4, #96]
    stp     d8, d9, [x4, #112]
    stp     d10, d11, [x4, #128]
    stp     d12, d13, [x4, #144]
    stp     d14, d15, [x4, #160]
    msr     elr_el1, x0
    msr     spsr_el1, x5
    // Arming a step here, as an OS does on its way out to a task: from this
    // write to the eret, no load-exclusive (stepping through one could not
    // complete it).
    cbz     x6, 1f
    mrs     x9, mdscr_el1
    orr     x9, x9, x6
    msr     mdscr_el1, x9
1:
    msr     sp_el0, x3
    mov     x0, x1
    mov     x1, x2
    // Nothing of EL1's leaks into EL0's registers.
    mov     x2, xzr
    mov     x3, xzr
    mov     x4, xzr
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

// stub_el0_return(x0 = save area): abandons the exception handler's frames
// and returns from stub_el0_enter with EL1's state as it was.
.global stub_el0_return
stub_el0_return:
    ldp     x19, x20, [x0, #0]
    ldp     x21, x22, [x0, #16]
    ldp     x23, x24, [x0, #32]
    ldp     x25, x26, [x0, #48]
    ldp     x27, x28, [x0, #64]
    ldp     x29, x30, [x0, #80]
    ldp     d8, d9, [x0, #112]
    ldp     d10, d11, [x0, #128]
    ldp     d12, d13, [x0, #144]
    ldp     d14, d15, [x0, #160]
    ldp     x9, x10, [x0, #96]
    mov     sp, x9
    msr     daif, x10
    ret

// Runs at EL0: x0 = table of BrkCall records (el0.rs), x1 = how many. For
// each, loads x0..x7 from the record, makes the BRK hypercall and stores
// x0..x3 back into it; then leaves EL0 with SVC #0.
.global stub_el0_brk_calls
stub_el0_brk_calls:
    mov     x19, x0
    mov     x20, x1
1:  cbz     x20, 2f
    ldp     x0, x1, [x19, #0]
    ldp     x2, x3, [x19, #16]
    ldp     x4, x5, [x19, #32]
    ldp     x6, x7, [x19, #48]
    brk     #{HV_BRK_IMM}
    stp     x0, x1, [x19, #64]
    stp     x2, x3, [x19, #80]
    add     x19, x19, #{BRK_CALL_SIZE}
    sub     x20, x20, #1
    b       1b
2:  mov     x0, xzr
    svc     #0
    b       .

// Runs at EL0: a BRK that is not a hypercall. The guest's own EL1 vector
// must take it (from a lower EL) with ELR = stub_el0_brk_probe_insn.
.global stub_el0_brk_probe
stub_el0_brk_probe:
.global stub_el0_brk_probe_insn
stub_el0_brk_probe_insn:
    brk     #{PROBE_BRK_IMM}
    // Not reached when the BRK is delivered as hardware would.
    mov     x0, #1
    svc     #0
    b       .

// Runs at EL0 (el0.rs, `call_code`): x0 = code to call. Calls it and, if
// it returns, leaves EL0 with SVC #0 and x0 = 0. Code EL0 may not execute
// ends the call with the instruction abort instead, ELR at x0.
.global stub_el0_call
stub_el0_call:
    blr     x0
    mov     x0, xzr
    svc     #0
    b       .

// Stepped from EL1 (el0.rs, `step_probe`): the stub arms the step at EL1,
// enters here with SPSR.SS set, and the first instruction must be the only
// one that runs before the step exception.
.global stub_el0_step_probe
stub_el0_step_probe:
    nop
    nop
    // Not reached when stepping works as on hardware.
    mov     x0, #1
    svc     #0
    b       .

// AArch32 EL0 code (el0.rs, `bkpt32_probe`): an A32 `BKPT #0x32`, then,
// if it does not stop EL0, an A32 `SVC #0`.
.balign 4
.global stub_el0_bkpt32
stub_el0_bkpt32:
    .inst   0xe1200372
    .inst   0xef000000
    .inst   0xeafffffe
