// Entry of the hypervisor at EL2, MMU off. The monitor loaded us at a
// physical address of its choosing: platform_init_image relocates us for
// that address and zeroes .bss; then stage 1 (early.rs) runs in Rust at the
// PA and ends in the switch to our virtual addresses (switch.S). Secondary
// CPUs enter through switch.S directly.

.section .text.entry, "ax"
.global image_entry
image_entry:                                // x0 = DTB, x1 = handoff record
    mov     x19, x0
    mov     x20, x1
    bl      platform_init_image
    cbnz    x0, boot_failed
    mov     x0, #0
    bl      set_cpu_stack_and_vectors
    mov     x0, x19
    mov     x1, x20
    bl      hv_boot                         // stage 1; does not return

// Nothing can be printed yet: report failure to the monitor and power off.
boot_failed:
    ldr     x0, ={SIP_SET_EXIT_STATUS}
    mov     x1, #{EXIT_HYPERVISOR_FATAL}
    smc     #0
    ldr     x0, ={PSCI_SYSTEM_OFF}
    smc     #0
    b       boot_failed

// set_cpu_stack_and_vectors(x0 = slot): SP = top of that slot's stack,
// VBAR_EL2 = our vectors; a slot without a stack is fatal. Clobbers x0-x3.
set_cpu_stack_and_vectors:
    mov     x3, x30
    bl      platform_cpu_stack_top
    cbz     x0, boot_failed
    mov     sp, x0
    adrp    x1, hv_vectors
    add     x1, x1, :lo12:hv_vectors
    msr     vbar_el2, x1
    isb
    ret     x3

// enter_guest(x0 = frame): loads a TrapFrame into the registers and enters
// the lower EL it describes, on a fresh stack for this CPU.
.global enter_guest
enter_guest:
    // Interrupts stay masked until the eret (they would overwrite ELR_EL2
    // and SPSR_EL2).
    msr     daifset, #2
    ldr     x1, [x0, #{ELR_OFFSET}]
    msr     elr_el2, x1
    ldr     x1, [x0, #{SPSR_OFFSET}]
    msr     spsr_el2, x1
    ldp     x2, x3, [x0, #16 * 1]
    ldp     x4, x5, [x0, #16 * 2]
    ldp     x6, x7, [x0, #16 * 3]
    ldp     x8, x9, [x0, #16 * 4]
    ldp     x10, x11, [x0, #16 * 5]
    ldp     x12, x13, [x0, #16 * 6]
    ldp     x14, x15, [x0, #16 * 7]
    ldp     x16, x17, [x0, #16 * 8]
    ldp     x18, x19, [x0, #16 * 9]
    ldp     x20, x21, [x0, #16 * 10]
    ldp     x22, x23, [x0, #16 * 11]
    ldp     x24, x25, [x0, #16 * 12]
    ldp     x26, x27, [x0, #16 * 13]
    ldp     x28, x29, [x0, #16 * 14]
    ldr     x30, [x0, #16 * 15]
    ldp     x0, x1, [x0, #0]
    eret
.ltorg
