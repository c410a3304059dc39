// Entry of the guest-stub at EL1, MMU off, x0 = its DTB. Enables FP/SIMD
// at EL1 and EL0 (the stub is built for aarch64-unknown-none, whose code may
// use the vector registers anywhere, e.g. to zero an array), relocates
// itself against the address the hypervisor loaded it at, zeroes .bss,
// takes its stack and runs stub_main.

.section .text.entry, "ax"
.global image_entry
image_entry:
    mov     x19, x0
    mrs     x0, cpacr_el1
    orr     x0, x0, #{CPACR_FPEN_NO_TRAP}
    msr     cpacr_el1, x0
    isb
    bl      platform_init_image
    cbnz    x0, 1f
    mov     x0, #0
    bl      platform_cpu_stack_top
    mov     sp, x0
    adrp    x0, stub_vectors
    add     x0, x0, :lo12:stub_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    bl      stub_main                       // does not return
1:  // Bad relocation: nothing to print with yet, so power off.
    ldr     x0, ={PSCI_SYSTEM_OFF}
    hvc     #0
    b       1b
.ltorg

// Entry of every other vCPU, started by the boot vCPU with PSCI CPU_ON
// (smp.rs): EL1, MMU off, DAIF masked, x0 = the context ID = the vCPU's
// slot. The image is already relocated and its .bss zeroed (by the boot
// vCPU, long before), so this only does what is per-CPU: FP/SIMD on, the
// slot's own stack, the vectors; then stub_secondary_main(slot). A slot
// with no stack (the boot vCPU never asks for one) parks the vCPU.
.section .text, "ax"
.global stub_secondary_entry
stub_secondary_entry:
    mov     x19, x0
    mrs     x0, cpacr_el1
    orr     x0, x0, #{CPACR_FPEN_NO_TRAP}
    msr     cpacr_el1, x0
    isb
    mov     x0, x19
    bl      platform_cpu_stack_top          // uses x0-x2 only
    cbz     x0, 2f
    mov     sp, x0
    adrp    x0, stub_vectors
    add     x0, x0, :lo12:stub_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    bl      stub_secondary_main             // does not return
2:  wfi
    b       2b
