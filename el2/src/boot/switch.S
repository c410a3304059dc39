// The switch from physical to virtual addresses: the image is re-mapped
// through a third (intermediate) address space, or by taking a page fault.
//
// Everything here runs first at the physical load address with the MMU
// off, so it lives in one page-aligned section that the intermediate
// address space maps twice: at its PA (identity) and at its VA. SWITCH_PLAN
// (el2/src/boot/switch.rs) holds the register values stage 1 computed.
//
// After the jump, code runs at its VA, where every PC-relative reference
// (adrp, bl) yields VAs: the landing needs no table of entry addresses.

.section .text.trampoline, "ax"
.balign 4096
.global hv_trampoline_start
hv_trampoline_start:

// remap=fault: VBAR_EL2 points here (at its VA) when the MMU comes on; the
// very next instruction fetch, still at a PA, takes a translation fault and
// lands in one of these vectors, at the VA.
.global hv_remap_fault_vectors
hv_remap_fault_vectors:
.rept 16
.balign 128
    b       remap_fault_landing
.endr

// hv_switch_boot(): the boot CPU, from stage 1 (MMU off, at PA).
.global hv_switch_boot
hv_switch_boot:
    mov     x19, #0                         // slot
    mov     x20, #1                         // boot CPU
    b       switch_common

// Secondary CPUs arrive here from PSCI CPU_ON, at PA, MMU off, x0 = slot.
.global hv_secondary_entry
hv_secondary_entry:
    mov     x19, x0
    mov     x20, #0

// x19 = slot, x20 = 1 on the boot CPU. Uses no stack until the landing.
switch_common:
    msr     daifset, #0xf
    adrp    x21, SWITCH_PLAN
    add     x21, x21, :lo12:SWITCH_PLAN
    cbz     x20, 1f
    // Boot CPU: rewrite every relocated word for the VA the image will run
    // at (stage 1 ran with them relocated for the PA). From here on, no
    // Rust runs until the landing.
    ldr     x0, [x21, #{PA_DISPLACEMENT}]
    ldr     x1, [x21, #{VA_DISPLACEMENT}]
    bl      platform_apply_relocations
    cbnz    x0, switch_failed
1:  ldr     x22, [x21, #{VA_DISPLACEMENT}]
    ldr     x23, [x21, #{PA_DISPLACEMENT}]
    sub     x24, x22, x23                   // x24 = VA - PA of the image
    // The intermediate space maps nothing but this section, so everything
    // the final step needs is loaded now.
    cmp     x19, #{MAX_CPUS}
    b.hs    switch_failed
    add     x0, x21, #{TTBR_KERNEL}
    ldr     x25, [x0, x19, lsl #3]          // this slot's kernel root
    ldr     x26, [x21, #{TTBR_USER}]
    ldr     x27, [x21, #{TCR_FINAL}]
    ldr     x28, [x21, #{VHE}]
    ldr     x0, [x21, #{MAIR}]
    msr     mair_el2, x0
    ldr     x0, [x21, #{HCR}]               // E2H set here for VHE
    msr     hcr_el2, x0
    isb
    ldr     x0, [x21, #{CPTR}]              // its layout depends on E2H
    msr     cptr_el2, x0
    isb
    ldr     x0, [x21, #{TCR_SWITCH}]
    msr     tcr_el2, x0
    ldr     x0, [x21, #{REMAP_FAULT}]
    cbnz    x0, fault_path

    // remap=intermediate: the third address space maps this section at its
    // PA and its VA; turn the MMU on under it, still executing at the PA...
    ldr     x0, [x21, #{TTBR_INTERMEDIATE}]
    msr     ttbr0_el2, x0
    cbz     x28, 5f                         // TTBR1_EL2 exists only with VHE
    msr     S3_4_C2_C0_1, x0
5:  dsb     ish
    tlbi    alle2
    dsb     ish
    isb
    ldr     x0, [x21, #{SCTLR}]
    msr     sctlr_el2, x0
    isb
    // ... jump to the VA alias of the next instruction ...
    adr     x0, 2f
    add     x0, x0, x24
    br      x0
2:  // ... and, now at the VA, switch to the final tables (no identity map).
    bl      install_final_tables
    b       landing

    // remap=fault: tables that map only the VA, VBAR at the VA of the
    // vectors above; enabling the MMU faults on the next fetch.
fault_path:
    bl      install_final_tables
    adr     x0, hv_remap_fault_vectors
    add     x0, x0, x24
    msr     vbar_el2, x0
    isb
    ldr     x0, [x21, #{SCTLR}]
    msr     sctlr_el2, x0
    isb
    b       .                               // never fetched: the fetch faults

remap_fault_landing:
    // At the VA now. Keep what the fault said, for the boot log.
    adrp    x21, SWITCH_PLAN
    add     x21, x21, :lo12:SWITCH_PLAN
    cbz     x20, landing
    mrs     x0, esr_el2
    str     x0, [x21, #{FAULT_ESR}]
    mrs     x0, elr_el2
    str     x0, [x21, #{FAULT_ELR}]

landing:
    // At the VA, on the final tables: take this slot's stack and vectors.
    mov     x0, x19
    bl      platform_cpu_stack_top
    cbz     x0, switch_failed
    mov     sp, x0
    adrp    x0, hv_vectors
    add     x0, x0, :lo12:hv_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    cbz     x20, 3f
    bl      hv_main                         // does not return
3:  bl      hv_secondary_main               // does not return

// Installs the final translation tables: x25 = this CPU's kernel root (its
// own private data area, everything else shared), x26 = user
// root, x27 = TCR, x28 = 1 under VHE. Touches no memory.
install_final_tables:
    msr     ttbr0_el2, x25                  // the kernel's range under the split scheme
    cbz     x28, 4f
    msr     S3_4_C2_C0_1, x25               // TTBR1_EL2: the kernel's range under VHE
    msr     ttbr0_el2, x26                  // TTBR0_EL2: EL0's range under VHE
4:  msr     tcr_el2, x27
    dsb     ish
    tlbi    alle2
    dsb     ish
    isb
    ret

// Nothing can be printed: report failure to the monitor and power off.
.global switch_failed
switch_failed:
    ldr     x0, ={SIP_SET_EXIT_STATUS}
    mov     x1, #{EXIT_HYPERVISOR_FATAL}
    smc     #0
    ldr     x0, ={PSCI_SYSTEM_OFF}
    smc     #0
    b       switch_failed
.ltorg

.balign 4096
.global hv_trampoline_end
hv_trampoline_end:
