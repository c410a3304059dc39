// Entry of the guest-stub at EL1, MMU off, x0 = its DTB. Relocates itself
// against the address the hypervisor loaded it at, zeroes .bss, takes its
// stack and runs stub_main.

.section .text.entry, "ax"
.global image_entry
image_entry:
    mov     x19, x0
    adrp    x0, __image_base
    add     x0, x0, :lo12:__image_base
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
    bl      platform_apply_relocations
    cbnz    x0, 1f
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
    bl      platform_zero
    adrp    x0, __stacks_end
    add     x0, x0, :lo12:__stacks_end
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
